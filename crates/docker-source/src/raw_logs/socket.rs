//! The connection of a raw log stream: under the reactor (reads wait for readiness) or parked
//! out of it (read on a timer, see `parking.rs`).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::{
    io::{AsyncRead, AsyncWriteExt, ReadBuf},
    net::{TcpStream, UnixStream},
};

use super::RawEndpoint;

/// A connection under the reactor: reads wait for readiness.
#[derive(Debug)]
pub(super) enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// A connection out of the reactor (still non-blocking): its data wakes nobody.
#[derive(Debug)]
pub(super) enum Parked {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Conn {
    pub(super) async fn connect(endpoint: &RawEndpoint) -> io::Result<Conn> {
        Ok(match endpoint {
            RawEndpoint::Unix(path) => Conn::Unix(UnixStream::connect(path).await?),
            RawEndpoint::Tcp(address) => {
                let stream = TcpStream::connect(address.as_str()).await?;
                stream.set_nodelay(true)?;
                // A follow stream may stay silent for hours: keepalive notices a dead peer.
                crate::transport::set_tcp_keepalive(&stream)?;
                Conn::Tcp(stream)
            }
        })
    }

    pub(super) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::Unix(stream) => stream.write_all(bytes).await,
            Conn::Tcp(stream) => stream.write_all(bytes).await,
        }
    }

    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        into: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(into);
        ready!(match self {
            Conn::Unix(stream) => Pin::new(stream).poll_read(cx, &mut buf),
            Conn::Tcp(stream) => Pin::new(stream).poll_read(cx, &mut buf),
        })?;
        Poll::Ready(Ok(buf.filled().len()))
    }

    pub(super) async fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read(cx, into)).await
    }

    /// Takes the socket out of the reactor (it stays non-blocking).
    pub(super) fn park(self) -> io::Result<Parked> {
        Ok(match self {
            Conn::Unix(stream) => Parked::Unix(stream.into_std()?),
            Conn::Tcp(stream) => Parked::Tcp(stream.into_std()?),
        })
    }
}

impl Parked {
    pub(super) fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        match self {
            Parked::Unix(stream) => stream.read(into),
            Parked::Tcp(stream) => stream.read(into),
        }
    }

    /// Puts the socket back under the reactor.
    fn unpark(self) -> io::Result<Conn> {
        Ok(match self {
            Parked::Unix(stream) => Conn::Unix(UnixStream::from_std(stream)?),
            Parked::Tcp(stream) => Conn::Tcp(TcpStream::from_std(stream)?),
        })
    }
}

#[derive(Debug)]
pub(super) enum Socket {
    Registered(Conn),
    Parked(Parked),
    /// Only while moving between the two; a failed move leaves it here and ends the stream.
    Moving,
}

impl Socket {
    /// Takes the socket out of the reactor (if it is under it).
    pub(super) fn park(&mut self) -> io::Result<()> {
        *self = match std::mem::replace(self, Socket::Moving) {
            Socket::Registered(conn) => Socket::Parked(conn.park()?),
            other => other,
        };
        Ok(())
    }

    /// Puts the socket back under the reactor (if it is out of it).
    pub(super) fn unpark(&mut self) -> io::Result<()> {
        *self = match std::mem::replace(self, Socket::Moving) {
            Socket::Parked(parked) => Socket::Registered(parked.unpark()?),
            other => other,
        };
        Ok(())
    }
}
