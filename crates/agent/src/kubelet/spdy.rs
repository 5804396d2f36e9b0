//! The server side of the SPDY/3 framing that Kubernetes clients fall back to for streaming
//! (`Upgrade: SPDY/3.1`, as Go's `moby/spdystream` speaks it): kubectl up to 1.29 runs `exec`
//! over it. The client opens streams (SYN_STREAM with compressed headers naming each stream's
//! role); the server replies to each and both sides send DATA frames, a FIN flag ending a
//! direction. Like spdystream, there is no flow control: WINDOW_UPDATE and SETTINGS are read
//! and ignored.
//!
//! [`Session::start`] runs a connection: a reader task parses frames and routes data to its
//! [`Stream`]s, a writer task sends what [`StreamWriter`]s queue, in order.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::collections::HashMap;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// The `Upgrade` header value clients send and the server answers.
pub const UPGRADE: &str = "SPDY/3.1";

/// The version field of control frames (SPDY/3.1 is SPDY/3's framing).
const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
/// The flag ending a direction of a stream.
const FLAG_FIN: u8 = 1;
/// The largest DATA frame sent; a write is split into frames of at most this.
const MAX_DATA: usize = 32 * 1024;
/// Frames queued per stream before the reader waits for the stream's reader.
const STREAM_QUEUE: usize = 16;

/// One client connection.
pub struct Session {
    streams: mpsc::Receiver<Stream>,
    closed: watch::Receiver<bool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // The writer ends once every queued frame is written and no writer is left.
        self.reader.abort();
    }
}

impl Session {
    /// Serves the SPDY connection `io` (the upgraded HTTP connection).
    pub fn start<IO>(io: IO) -> Session
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (frames, queued) = mpsc::channel(STREAM_QUEUE);
        let (streams_tx, streams) = mpsc::channel(STREAM_QUEUE);
        let (closed_tx, closed) = watch::channel(false);
        tokio::spawn(write_frames(write, queued));
        let reader = tokio::spawn(async move {
            if let Err(err) = read_frames(read, frames, streams_tx).await {
                tracing::debug!(%err, "spdy: connection ended");
            }
            let _ = closed_tx.send(true);
        });
        Session {
            streams,
            closed,
            reader,
        }
    }

    /// The next stream the client opens; `None` once the connection has ended.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.streams.recv().await
    }

    /// Resolves once the client's side of the connection has ended.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closed = self.closed.clone();
        async move {
            let _ = closed.wait_for(|closed| *closed).await;
        }
    }
}

/// A stream the client opened.
pub struct Stream {
    headers: Vec<(String, String)>,
    data: mpsc::Receiver<Bytes>,
    writer: StreamWriter,
}

impl Stream {
    /// The first value of header `name` (lowercase, as SPDY sends names).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.split('\0').next().unwrap_or_default())
    }

    /// Splits the stream into what the client sends and a way to answer.
    pub fn split(self) -> (StreamReader, StreamWriter) {
        (StreamReader { data: self.data }, self.writer)
    }
}

/// What the client sends on a stream.
pub struct StreamReader {
    data: mpsc::Receiver<Bytes>,
}

impl StreamReader {
    /// The next data; `None` once the client ended or reset the stream.
    pub async fn read(&mut self) -> Option<Bytes> {
        self.data.recv().await
    }
}

/// Sends on a stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    frames: mpsc::Sender<Vec<u8>>,
}

impl StreamWriter {
    /// Sends `data` (in frames of at most 32 KiB); Err once the connection is gone.
    pub async fn write(&self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(MAX_DATA) {
            self.send(data_frame(self.id, 0, chunk)).await?;
        }
        Ok(())
    }

    /// Ends the stream in the server's direction.
    pub async fn finish(&self) -> io::Result<()> {
        self.send(data_frame(self.id, FLAG_FIN, &[])).await
    }

    async fn send(&self, frame: Vec<u8>) -> io::Result<()> {
        self.frames
            .send(frame)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the connection has ended"))
    }
}

/// Writes queued frames until every sender is gone or the client stops reading.
async fn write_frames<W: AsyncWrite>(write: W, mut queued: mpsc::Receiver<Vec<u8>>) {
    let mut write = std::pin::pin!(write);
    while let Some(frame) = queued.recv().await {
        if write.write_all(&frame).await.is_err() || write.flush().await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// Reads frames until the client ends the connection: new streams are replied to and handed
/// out on `streams`, data goes to its stream, pings are answered.
async fn read_frames<R: AsyncRead>(
    read: R,
    frames: mpsc::Sender<Vec<u8>>,
    streams: mpsc::Sender<Stream>,
) -> io::Result<()> {
    let mut read = std::pin::pin!(read);
    let mut headers = HeaderCodec::new();
    let mut open: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    loop {
        let mut head = [0u8; 8];
        match read.read_exact(&mut head).await {
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            result => result?,
        };
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; len];
        read.read_exact(&mut payload).await?;
        let word = u32::from_be_bytes(head[0..4].try_into().expect("four bytes"));
        if word & 0x8000_0000 == 0 {
            // DATA: the stream id, then the payload.
            let id = word & 0x7fff_ffff;
            if let Some(stream) = open.get(&id)
                && !payload.is_empty()
                && stream.send(Bytes::from(payload)).await.is_err()
            {
                open.remove(&id); // nobody reads it any more
            }
            if flags & FLAG_FIN != 0 {
                open.remove(&id);
            }
            continue;
        }
        let kind = (word & 0xffff) as u16;
        match kind {
            SYN_STREAM => {
                let id = stream_id(&payload, 0)?;
                let block = payload.get(10..).ok_or_else(|| malformed("SYN_STREAM"))?;
                let stream_headers = headers.decode(block)?;
                let (data_tx, data) = mpsc::channel(STREAM_QUEUE);
                if flags & FLAG_FIN == 0 {
                    open.insert(id, data_tx);
                }
                // An empty reply accepts the stream, as upstream's handler does.
                let reply = [&id.to_be_bytes()[..], &headers.encode_empty()].concat();
                send(&frames, control_frame(SYN_REPLY, 0, &reply)).await?;
                let writer = StreamWriter {
                    id,
                    frames: frames.clone(),
                };
                let stream = Stream {
                    headers: stream_headers,
                    data,
                    writer,
                };
                if streams.send(stream).await.is_err() {
                    return Ok(()); // the session was dropped
                }
            }
            // Its header block still moves the shared decompression state on.
            HEADERS => {
                headers.decode(payload.get(4..).ok_or_else(|| malformed("HEADERS"))?)?;
            }
            RST_STREAM => {
                open.remove(&stream_id(&payload, 0)?);
            }
            // Pings the client starts have odd ids; answering echoes them.
            PING if payload.first_chunk::<4>().map(|id| id[3] & 1) == Some(1) => {
                send(&frames, control_frame(PING, 0, &payload)).await?;
            }
            GOAWAY => return Ok(()),
            _ => {} // SETTINGS, WINDOW_UPDATE, our own pings' answers
        }
    }
}

async fn send(frames: &mpsc::Sender<Vec<u8>>, frame: Vec<u8>) -> io::Result<()> {
    frames
        .send(frame)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the writer has ended"))
}

fn malformed(kind: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("a malformed {kind} frame"),
    )
}

/// The 31-bit stream id at `offset` of a control frame's payload.
fn stream_id(payload: &[u8], offset: usize) -> io::Result<u32> {
    payload
        .get(offset..offset + 4)
        .map(|id| u32::from_be_bytes(id.try_into().expect("four bytes")) & 0x7fff_ffff)
        .filter(|id| *id != 0)
        .ok_or_else(|| malformed("stream"))
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

fn data_frame(id: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

/// SPDY/3's header compression: one zlib stream per direction for the whole connection,
/// primed with the protocol's dictionary, each header block ending in a sync flush.
struct HeaderCodec {
    decompress: Decompress,
    compress: Compress,
}

impl HeaderCodec {
    fn new() -> Self {
        let mut compress = Compress::new(Compression::default(), true);
        compress
            .set_dictionary(&dictionary())
            .expect("a fresh zlib stream takes a dictionary");
        Self {
            decompress: Decompress::new(true),
            compress,
        }
    }

    /// The name/value pairs of a compressed header block.
    fn decode(&mut self, block: &[u8]) -> io::Result<Vec<(String, String)>> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let mut plain = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        while !input.is_empty() {
            if plain.capacity() - plain.len() < 256 {
                plain.reserve(plain.capacity());
            }
            let before = self.decompress.total_in();
            let result = self
                .decompress
                .decompress_vec(input, &mut plain, FlushDecompress::Sync);
            let used = (self.decompress.total_in() - before) as usize;
            input = &input[used..];
            match result {
                Ok(_) if used == 0 && plain.capacity() > plain.len() => break,
                Ok(_) => {}
                Err(err) if err.needs_dictionary().is_some() => {
                    self.decompress
                        .set_dictionary(&dictionary())
                        .map_err(|_| invalid("header block with an unknown dictionary"))?;
                }
                Err(_) => return Err(invalid("a corrupt header block")),
            }
        }
        parse_header_block(&plain).ok_or_else(|| invalid("a malformed header block"))
    }

    /// A compressed empty header block (no pairs), continuing the connection's stream.
    fn encode_empty(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.compress
            .compress_vec(&[0, 0, 0, 0], &mut out, FlushCompress::Sync)
            .expect("64 bytes hold four compressed bytes");
        out
    }
}

/// Reads `count` then `count` times (length, name, length, value), lengths 32-bit big-endian.
fn parse_header_block(mut plain: &[u8]) -> Option<Vec<(String, String)>> {
    let mut take = |len: usize| -> Option<&[u8]> {
        let (head, rest) = plain.split_at_checked(len)?;
        plain = rest;
        Some(head)
    };
    let number = |bytes: &[u8]| u32::from_be_bytes(bytes.try_into().expect("four bytes"));
    let count = number(take(4)?);
    let mut headers = Vec::new();
    for _ in 0..count {
        let len = number(take(4)?) as usize;
        let name = String::from_utf8_lossy(take(len)?).to_ascii_lowercase();
        let len = number(take(4)?) as usize;
        let value = String::from_utf8_lossy(take(len)?).into_owned();
        headers.push((name, value));
    }
    Some(headers)
}

/// SPDY/3's header compression dictionary: these words, each after its length as a 32-bit
/// big-endian number, then [`DICTIONARY_TAIL`] as is.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The end of SPDY/3's dictionary: status codes and phrases, dates, common values.
const DICTIONARY_TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412\
413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently\
400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error\
501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec \
00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,\
image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivate\
max-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

fn dictionary() -> Vec<u8> {
    let mut dictionary = Vec::with_capacity(1500);
    for word in DICTIONARY_WORDS {
        dictionary.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dictionary.extend_from_slice(word.as_bytes());
    }
    dictionary.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    dictionary
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    /// The client's side: its own compression stream, as a Go client keeps one.
    struct Client {
        io: DuplexStream,
        compress: Compress,
        decompress: HeaderCodec,
    }

    impl Client {
        fn new(io: DuplexStream) -> Self {
            let mut compress = Compress::new(Compression::best(), true);
            compress.set_dictionary(&dictionary()).unwrap();
            Client {
                io,
                compress,
                decompress: HeaderCodec::new(),
            }
        }

        async fn open(&mut self, id: u32, headers: &[(&str, &str)], flags: u8) {
            let mut block = (headers.len() as u32).to_be_bytes().to_vec();
            for (name, value) in headers {
                for word in [name, value] {
                    block.extend_from_slice(&(word.len() as u32).to_be_bytes());
                    block.extend_from_slice(word.as_bytes());
                }
            }
            let mut compressed = Vec::with_capacity(block.len() + 64);
            self.compress
                .compress_vec(&block, &mut compressed, FlushCompress::Sync)
                .unwrap();
            let payload = [&id.to_be_bytes()[..], &[0; 6], &compressed].concat();
            self.send(control_frame(SYN_STREAM, flags, &payload)).await;
        }

        async fn send(&mut self, frame: Vec<u8>) {
            self.io.write_all(&frame).await.unwrap();
        }

        /// The next frame: its first word, flags and payload.
        async fn frame(&mut self) -> (u32, u8, Vec<u8>) {
            let mut head = [0u8; 8];
            self.io.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
            let mut payload = vec![0; len];
            self.io.read_exact(&mut payload).await.unwrap();
            let word = u32::from_be_bytes(head[0..4].try_into().unwrap());
            (word, head[4], payload)
        }

        /// Reads a SYN_REPLY and returns its stream id and headers.
        async fn reply(&mut self) -> (u32, Vec<(String, String)>) {
            let (word, _, payload) = self.frame().await;
            assert_eq!(word, 0x8003_0000 | u32::from(SYN_REPLY));
            let headers = self.decompress.decode(&payload[4..]).unwrap();
            (stream_id(&payload, 0).unwrap(), headers)
        }
    }

    #[tokio::test]
    async fn streams_are_replied_to_and_carry_data_both_ways() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut client = Client::new(client);
        let mut session = Session::start(server);

        client
            .open(1, &[("streamtype", "stdin"), ("port", "80\0ignored")], 0)
            .await;
        let stream = session.accept().await.unwrap();
        assert_eq!(stream.header("streamtype"), Some("stdin"));
        assert_eq!(stream.header("port"), Some("80"));
        assert_eq!(stream.header("absent"), None);
        assert_eq!(client.reply().await, (1, vec![]));
        // A second stream's headers continue the same compression stream, on both sides.
        client.open(3, &[("streamtype", "stdout")], 0).await;
        let second = session.accept().await.unwrap();
        assert_eq!(second.header("streamtype"), Some("stdout"));
        assert_eq!(client.reply().await, (3, vec![]));

        let (mut reader, _) = stream.split();
        client.send(data_frame(1, 0, b"hello ")).await;
        client.send(data_frame(1, FLAG_FIN, b"world")).await;
        assert_eq!(reader.read().await.unwrap(), "hello ");
        assert_eq!(reader.read().await.unwrap(), "world");
        assert_eq!(reader.read().await, None, "FIN ends the stream");

        let (_, writer) = second.split();
        let big = vec![7u8; MAX_DATA + 10];
        writer.write(&big).await.unwrap();
        writer.finish().await.unwrap();
        let (word, flags, first) = client.frame().await;
        assert_eq!((word, flags, first.len()), (3, 0, MAX_DATA));
        let (word, flags, rest) = client.frame().await;
        assert_eq!((word, flags, rest.len()), (3, 0, 10));
        assert_eq!(client.frame().await, (3, FLAG_FIN, vec![]));

        // The client's pings are echoed; its GOAWAY ends the session.
        client
            .send(control_frame(PING, 0, &1u32.to_be_bytes()))
            .await;
        assert_eq!(
            client.frame().await,
            (0x8003_0006, 0, 1u32.to_be_bytes().to_vec())
        );
        client.send(control_frame(GOAWAY, 0, &[0; 8])).await;
        session.closed().await;
        assert!(session.accept().await.is_none());
    }

    #[test]
    fn header_blocks_are_checked() {
        assert_eq!(
            parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 1, b'A', 0, 0, 0, 1, b'v']),
            Some(vec![("a".into(), "v".into())])
        );
        assert_eq!(parse_header_block(&[0, 0, 0, 2, 0, 0, 0, 1, b'a']), None);
        let mut codec = HeaderCodec::new();
        assert_eq!(
            codec.decode(b"not zlib").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
