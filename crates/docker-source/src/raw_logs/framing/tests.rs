//! The transfer-framing decoder alone: every way reads can cut a body gives the same payload.

use bytes::BytesMut;

use super::{Chunked, Framing};

/// A chunked body: a chunk with an extension, one of a single byte, a trailer.
const BODY: &[u8] =
    b"5;name=value\r\nhello\r\n1\r\n \r\nB\r\nworld again\r\n0\r\nX-Trailer: yes\r\n\r\n";
const PAYLOAD: &[u8] = b"hello world again";

fn decode(framing: &mut Framing, reads: &[&[u8]]) -> std::io::Result<Vec<u8>> {
    let mut payload = BytesMut::new();
    for read in reads {
        framing.decode(read, &mut payload)?;
    }
    Ok(payload.to_vec())
}

#[test]
fn a_chunked_body_cut_anywhere_decodes_to_the_same_payload() {
    for cut in 0..=BODY.len() {
        let (first, second) = BODY.split_at(cut);
        let mut framing = Framing::Chunked(Chunked::default());
        let payload = decode(&mut framing, &[first, second]).unwrap();
        assert_eq!(payload, PAYLOAD, "cut at {cut}");
        assert!(framing.is_complete(), "cut at {cut}");
    }
    let mut framing = Framing::Chunked(Chunked::default());
    let bytes: Vec<&[u8]> = BODY.chunks(1).collect();
    assert_eq!(decode(&mut framing, &bytes).unwrap(), PAYLOAD);
    assert!(framing.is_complete());
}

#[test]
fn bytes_after_the_body_are_not_part_of_it() {
    let mut chunked = Framing::Chunked(Chunked::default());
    let after = [BODY, b"HTTP/1.1 200 OK\r\n"].concat();
    assert_eq!(decode(&mut chunked, &[&after]).unwrap(), PAYLOAD);
    let mut length = Framing::Length(5);
    assert_eq!(
        decode(&mut length, &[b"hel", b"lo, more"]).unwrap(),
        b"hello"
    );
    assert!(length.is_complete());
}

#[test]
fn a_half_decoded_body_is_not_complete() {
    let mut framing = Framing::Chunked(Chunked::default());
    let cut = BODY.len() - 3;
    decode(&mut framing, &[&BODY[..cut]]).unwrap();
    assert!(!framing.is_complete());
    assert!(framing.end_of_input().is_err());
}

#[test]
fn malformed_chunk_framing_is_an_error_wherever_reads_cut_it() {
    let cases: [(&str, &[u8]); 5] = [
        ("data without CRLF", b"2\r\nabXY"),
        ("a bare LF after the size", b"2\nab\r\n"),
        ("a size that is not hex", b"zz\r\nab\r\n"),
        ("an empty size", b"\r\nab\r\n"),
        ("a size over 64 bits", b"11112222333344445\r\n"),
    ];
    for (what, body) in cases {
        for cut in 0..=body.len() {
            let (first, second) = body.split_at(cut);
            let mut framing = Framing::Chunked(Chunked::default());
            let error = decode(&mut framing, &[first, second]).expect_err(what);
            assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{what}");
        }
    }
    let mut framing = Framing::Chunked(Chunked::default());
    let endless = vec![b'1'; 3000];
    let error = decode(&mut framing, &[&endless, &endless]).expect_err("endless line");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
}
