//! Unit tests of what the decoder does with lines that come again: copies around a rotation,
//! clock steps, replays after a reopen, and the rest of a long line across a reopen.

use capture_core::{LogStream, Position};

use crate::{
    cursor::{RECENT_LINES, fingerprint},
    decoder::{DOCKER_PIECE_BYTES, Decoder},
    tests::{BASE_NANOS, Collected, decoder, frame},
};

/// Feeds complete stdout lines `(offset from BASE_NANOS, text)`.
fn feed(decoder: &mut Decoder, out: &mut Collected, lines: &[(i64, &str)]) {
    for (offset, text) in lines {
        decoder.frame(
            LogStream::Stdout,
            &frame(BASE_NANOS + offset, text, true),
            out,
        );
    }
}

#[test]
fn a_copy_of_the_last_line_is_skipped_not_given_the_next_ordinal() {
    let mut decoder = decoder();
    let mut out = Collected::default();
    feed(
        &mut decoder,
        &mut out,
        &[(1, "a"), (2, "b"), (2, "b"), (3, "c")],
    );
    assert_eq!(out.texts(), ["a", "b", "c"]);
    assert_eq!(decoder.take_counters().repeated, 1);
}

#[test]
fn a_rotation_rewind_is_skipped_and_counted() {
    let mut decoder = decoder();
    let mut out = Collected::default();
    let first: Vec<(i64, String)> = (0..50).map(|n| (n * 10, format!("line {n}"))).collect();
    let lines: Vec<(i64, &str)> = first.iter().map(|(t, s)| (*t, s.as_str())).collect();
    feed(&mut decoder, &mut out, &lines);
    // Docker goes back to the first line of its new file (line 30) and sends on.
    feed(&mut decoder, &mut out, &lines[30..]);
    feed(&mut decoder, &mut out, &[(500, "line 50")]);
    assert_eq!(out.0.len(), 51);
    assert_eq!(out.0.last().unwrap().2, "line 50");
    assert!(out.1.iter().all(|replay| !replay));
    assert_eq!(decoder.take_counters().repeated, 20);
}

#[test]
fn a_clock_step_back_is_delivered_live_and_equal_nanoseconds_are_two_lines() {
    let mut decoder = decoder();
    let mut out = Collected::default();
    feed(
        &mut decoder,
        &mut out,
        &[
            (100, "a"),
            (200, "b"),
            // The clock stepped back: new timestamps, older than the last line.
            (150, "stepped"),
            (160, "after step"),
            // A second line in the same nanosecond, with other text.
            (160, "same nanosecond"),
            (300, "later"),
        ],
    );
    assert_eq!(
        out.texts(),
        [
            "a",
            "b",
            "stepped",
            "after step",
            "same nanosecond",
            "later"
        ]
    );
    assert_eq!(out.0[4].1, Position::new(BASE_NANOS + 160, 1));
    assert!(out.1.iter().all(|replay| !replay));
    assert_eq!(decoder.take_counters().repeated, 0);
}

#[test]
fn a_rewind_longer_than_the_memory_is_flagged_as_a_replay_until_recognised() {
    let mut decoder = decoder();
    let mut out = Collected::default();
    let count = RECENT_LINES as i64 + 100;
    let texts: Vec<String> = (0..count).map(|n| format!("line {n}")).collect();
    let lines: Vec<(i64, &str)> = (0..count)
        .map(|n| (n, texts[n as usize].as_str()))
        .collect();
    feed(&mut decoder, &mut out, &lines);
    let delivered = out.0.len();
    // All of it again: the first 100 are older than what is remembered.
    feed(&mut decoder, &mut out, &lines);
    feed(&mut decoder, &mut out, &[(count, "new")]);
    let again = &out.1[delivered..];
    assert_eq!(again.len(), 101, "100 undecided copies, then the new line");
    assert!(again[..100].iter().all(|replay| *replay));
    assert!(!again[100]);
    assert_eq!(decoder.take_counters().repeated, RECENT_LINES as u64);
}

#[test]
fn lines_up_to_the_boundary_are_flagged_as_a_replay_and_batches_can_cut_there() {
    let mut decoder = decoder().replays_through(BASE_NANOS + 30);
    decoder.reset([Some(Position::new(BASE_NANOS + 10, 0)), None, None].into());
    let mut out = Collected::default();
    feed(
        &mut decoder,
        &mut out,
        &[
            (10, "delivered"),
            (20, "maybe"),
            (30, "maybe too"),
            (40, "live"),
        ],
    );
    // The clock stepping back below the boundary later does not flag live lines again.
    feed(&mut decoder, &mut out, &[(25, "stepped")]);
    assert_eq!(out.texts(), ["maybe", "maybe too", "live", "stepped"]);
    assert_eq!(out.1, [true, true, false, false]);
    assert_eq!(decoder.take_counters().skipped, 1);
}

#[test]
fn a_reopen_whose_cursor_line_is_gone_is_counted() {
    let mut decoder = decoder();
    decoder.reset([Some(Position::new(BASE_NANOS + 10, 0)), None, None].into());
    let mut out = Collected::default();
    feed(&mut decoder, &mut out, &[(10, "cursor"), (20, "next")]);
    assert_eq!(decoder.take_counters().cursor_gone, 0);

    decoder.reset([Some(Position::new(BASE_NANOS + 10, 0)), None, None].into());
    // Rotated away: the stream starts after the cursor's line.
    feed(&mut decoder, &mut out, &[(20, "next")]);
    assert_eq!(decoder.take_counters().cursor_gone, 1);

    // A boundary (`read_from = "end"`) is not a line to look for.
    decoder.reset([Some(Position::new(BASE_NANOS + 15, u32::MAX)), None, None].into());
    feed(&mut decoder, &mut out, &[(20, "next")]);
    assert_eq!(decoder.take_counters().cursor_gone, 0);
}

/// A stdout line of `pieces` full Docker pieces and a short end, as frames.
fn long_line(nanos: i64, pieces: usize) -> (Vec<Vec<u8>>, String) {
    let mut frames = Vec::new();
    let mut whole = String::new();
    for piece in 0..pieces {
        let text: String =
            std::iter::repeat_n(char::from(b'a' + piece as u8), DOCKER_PIECE_BYTES).collect();
        frames.push(frame(nanos, &text, false));
        whole.push_str(&text);
    }
    frames.push(frame(nanos, "end", true));
    whole.push_str("end");
    (frames, whole)
}

#[test]
fn the_rest_of_a_long_line_sent_early_is_delivered_after_a_reopen() {
    let (frames, whole) = long_line(BASE_NANOS, 3);
    for sent_pieces in 1..=3 {
        let mut decoder = decoder();
        let mut out = Collected::default();
        decoder.frame(
            LogStream::Stdout,
            &frame(BASE_NANOS - 5, "before", true),
            &mut out,
        );
        for piece in &frames[..sent_pieces] {
            decoder.frame(LogStream::Stdout, piece, &mut out);
        }
        // Its end is late: the head is sent, then the stream is reopened after it.
        decoder.flush_partials(&mut out);
        let cursor = out.0.last().unwrap().1;
        decoder.reset([Some(cursor), None, None].into());
        decoder.frame(
            LogStream::Stdout,
            &frame(BASE_NANOS - 5, "before", true),
            &mut out,
        );
        for piece in &frames {
            decoder.frame(LogStream::Stdout, piece, &mut out);
        }
        decoder.frame(
            LogStream::Stdout,
            &frame(BASE_NANOS + 9, "after", true),
            &mut out,
        );
        let texts = out.texts();
        assert_eq!(
            texts.len(),
            4,
            "after {sent_pieces} pieces: before, head, rest, after"
        );
        assert_eq!(format!("{}{}", texts[1], texts[2]), whole);
        assert_eq!(texts[3], "after");
        assert_eq!(out.0[1].1, Position::new(BASE_NANOS, 0));
        assert_eq!(out.0[2].1, Position::new(BASE_NANOS, 1));
        assert_eq!(decoder.take_counters().cursor_gone, 0);
    }
}

#[test]
fn a_line_sent_in_three_parts_across_two_reopens_is_whole_once() {
    let (frames, whole) = long_line(BASE_NANOS, 3);
    let mut decoder = decoder();
    let mut out = Collected::default();
    decoder.frame(LogStream::Stdout, &frames[0], &mut out);
    decoder.flush_partials(&mut out);
    decoder.frame(LogStream::Stdout, &frames[1], &mut out);
    decoder.flush_partials(&mut out);
    decoder.reset([Some(out.0.last().unwrap().1), None, None].into());
    for piece in &frames[..3] {
        decoder.frame(LogStream::Stdout, piece, &mut out);
    }
    decoder.flush_partials(&mut out);
    decoder.reset([Some(out.0.last().unwrap().1), None, None].into());
    for piece in &frames {
        decoder.frame(LogStream::Stdout, piece, &mut out);
    }
    assert_eq!(out.texts().concat(), whole);
    let ordinals: Vec<u32> = out.0.iter().map(|line| line.1.ordinal).collect();
    assert_eq!(ordinals, [0, 1, 2, 3]);
}

#[test]
fn a_line_whose_head_was_not_sent_is_read_whole_after_a_reopen() {
    let (frames, whole) = long_line(BASE_NANOS, 2);
    let mut decoder = decoder();
    let mut out = Collected::default();
    decoder.frame(
        LogStream::Stdout,
        &frame(BASE_NANOS - 5, "before", true),
        &mut out,
    );
    decoder.frame(LogStream::Stdout, &frames[0], &mut out);
    decoder.flush_partials(&mut out);
    // The batch holding the head was dropped by the reopen: the cursor is before it.
    decoder.reset([Some(out.0[0].1), None, None].into());
    let mut again = Collected::default();
    for piece in &frames {
        decoder.frame(LogStream::Stdout, piece, &mut again);
    }
    assert_eq!(again.texts(), [whole.as_str()]);
}

#[test]
fn the_rest_of_a_long_tty_line_sent_early_is_delivered_after_a_reopen() {
    let head = format!("{}head", crate::tests::stamp(BASE_NANOS));
    let mut decoder = decoder();
    let mut out = Collected::default();
    decoder.tty(head.as_bytes(), &mut out);
    decoder.flush_partials(&mut out);
    decoder.reset([None, None, Some(out.0[0].1)].into());
    decoder.tty(format!("{head} and rest\r\n").as_bytes(), &mut out);
    assert_eq!(out.texts(), ["head", " and rest"]);
    assert_eq!(out.0[1].1, Position::new(BASE_NANOS, 1));
}

#[test]
fn fingerprints_tell_lines_of_equal_length_apart() {
    assert_ne!(
        fingerprint(b"gen run out 1234"),
        fingerprint(b"gen run out 1235")
    );
    assert_ne!(fingerprint(b""), fingerprint(b"\0"));
    assert_eq!(fingerprint(b"same"), fingerprint(b"same"));
}

#[test]
fn a_copy_of_a_tty_line_is_skipped_once_its_text_is_known() {
    let stamp = |offset| crate::tests::stamp(BASE_NANOS + offset);
    let line = |offset, text: &str| format!("{}{text}\r\n", stamp(offset));
    let mut decoder = decoder();
    let mut out = Collected::default();
    let stream = [
        line(1, "a"),
        line(2, "b"),
        // Docker's copy after a rotation, and a different line in the same nanosecond.
        line(2, "b"),
        line(2, "c"),
        line(3, "d"),
    ]
    .concat();
    decoder.tty(stream.as_bytes(), &mut out);
    assert_eq!(out.texts(), ["a", "b", "c", "d"]);
    assert_eq!(out.0[2].1, Position::new(BASE_NANOS + 2, 2));
    assert_eq!(decoder.take_counters().repeated, 1);
}

#[test]
fn a_file_switch_is_reported_where_the_copies_begin_after_a_jump() {
    use crate::cursor::{FileSwitch, SWITCH_GAP_NANOS};
    let mut decoder = decoder();
    let mut out = Collected::default();
    let gap = 5 * SWITCH_GAP_NANOS;
    // File k ends at 100; the follower skipped a file and went on at 100 + gap.
    feed(
        &mut decoder,
        &mut out,
        &[
            (99, "k-1"),
            (100, "k end"),
            (100 + gap, "k+2 a"),
            (101 + gap, "k+2 b"),
        ],
    );
    assert!(decoder.take_file_switches(false).is_empty());
    // At its first end of file there, Docker sends the new file again from its first line;
    // the switch is reported once the copies end.
    feed(
        &mut decoder,
        &mut out,
        &[(100 + gap, "k+2 a"), (101 + gap, "k+2 b")],
    );
    assert!(decoder.take_file_switches(false).is_empty());
    feed(&mut decoder, &mut out, &[(102 + gap, "k+2 c")]);
    assert_eq!(
        decoder.take_file_switches(false),
        [FileSwitch {
            stream: LogStream::Stdout,
            after: BASE_NANOS + 100,
            first: BASE_NANOS + 100 + gap,
        }]
    );
    assert_eq!(out.0.len(), 5);
    // A switch between lines written close together cannot hide a file: nothing to report.
    feed(
        &mut decoder,
        &mut out,
        &[(103 + gap, "c"), (102 + gap, "k+2 c")],
    );
    assert!(decoder.take_file_switches(false).is_empty());
}

#[test]
fn a_file_switch_whose_copies_run_to_the_end_of_the_stream_is_reported_at_its_end() {
    use crate::cursor::SWITCH_GAP_NANOS;
    let mut decoder = decoder();
    let mut out = Collected::default();
    let gap = 5 * SWITCH_GAP_NANOS;
    let lines = [
        (100, "k end"),
        (100 + gap, "last file a"),
        (101 + gap, "last file b"),
    ];
    feed(&mut decoder, &mut out, &lines);
    // The container exited: Docker sends its last file again, then ends the stream.
    feed(&mut decoder, &mut out, &lines[1..]);
    assert!(decoder.take_file_switches(false).is_empty());
    assert_eq!(decoder.take_file_switches(true).len(), 1);
}
