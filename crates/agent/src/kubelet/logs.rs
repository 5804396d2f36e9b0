//! Container logs as the kubelet serves them (`pkg/kubelet/kuberuntime/logs/logs.go`): CRI log
//! files parsed record by record, `tailLines` counted in records from the end of the file,
//! records older than `since` skipped, partial (`P`) records joined into one line, the prefix
//! kept only with `timestamps`, output cut at `limitBytes`, and with `follow` the file read on
//! as it grows until the container stops.

use bytes::Bytes;
use jiff::Timestamp;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// How the kubelet writes timestamps with `timestamps=true` (Go's
/// `2006-01-02T15:04:05.000000000Z07:00`: always nine fractional digits).
const TIMESTAMP_OUT: &str = "%Y-%m-%dT%H:%M:%S%.9fZ";

/// How often a followed log is checked for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// The options of `GET /containerLogs/...` (upstream's `v1.PodLogOptions` as the kubelet
/// reads them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOptions {
    /// Keep streaming as the container writes.
    pub follow: bool,
    /// The previous run of the container.
    pub previous: bool,
    /// Prefix every line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only the last this many records.
    pub tail_lines: Option<u64>,
    /// Only records at or after this time (`sinceTime`, or now minus `sinceSeconds`).
    pub since: Option<Timestamp>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Reads the kubelet's query parameters; the error is the 400 message. The API server
    /// validated the values before proxying, so malformed input here is a client talking to
    /// the kubelet directly.
    pub fn from_query(query: &[(String, String)], now: Timestamp) -> Result<Self, String> {
        let get = |key: &str| {
            query
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let flag = |key: &str| matches!(get(key), Some("true" | "1"));
        let number = |key: &str| -> Result<Option<i64>, String> {
            get(key)
                .filter(|v| !v.is_empty())
                .map(|v| v.parse().map_err(|_| format!("invalid {key}: {v:?}")))
                .transpose()
        };
        let since = match (number("sinceSeconds")?, get("sinceTime")) {
            (Some(seconds), _) => Some(now - jiff::SignedDuration::from_secs(seconds)),
            (None, Some(time)) if !time.is_empty() => Some(
                time.parse::<Timestamp>()
                    .map_err(|e| format!("invalid sinceTime {time:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Self {
            follow: flag("follow"),
            previous: flag("previous"),
            timestamps: flag("timestamps"),
            // The kubelet treats a negative tail as "everything".
            tail_lines: number("tailLines")?.and_then(|n| u64::try_from(n).ok()),
            since,
            limit_bytes: number("limitBytes")?.and_then(|n| u64::try_from(n).ok()),
        })
    }
}

/// One record of a CRI log file: `<timestamp> <stdout|stderr> <F|P>[:more tags] <content>`.
#[derive(Debug, PartialEq)]
pub struct CriRecord<'a> {
    /// When the runtime read the chunk.
    pub timestamp: Timestamp,
    /// Whether the chunk came from stderr.
    pub stderr: bool,
    /// The text, with its newline for a full (`F`) record and without for a partial (`P`) one.
    pub content: &'a [u8],
}

/// Parses one line of a CRI log file (with or without its newline), as upstream's
/// `parseCRILog`.
pub fn parse_cri_record(line: &[u8]) -> Result<CriRecord<'_>, String> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let timestamp = fields.next().unwrap_or_default();
    let timestamp = std::str::from_utf8(timestamp)
        .ok()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .ok_or_else(|| "unexpected timestamp format".to_string())?;
    let stderr = match fields.next() {
        Some(b"stdout") => false,
        Some(b"stderr") => true,
        Some(other) => {
            return Err(format!(
                "unexpected stream type {:?}",
                String::from_utf8_lossy(other)
            ));
        }
        None => return Err("stream type is not found".into()),
    };
    let tags = fields.next().ok_or("log tag is not found")?;
    let mut content = fields.next().ok_or("log tag is not found")?;
    // Tags are `F` or `P`, optionally followed by `:`-separated ones a newer runtime adds.
    let partial = tags.split(|b| *b == b':').next() == Some(b"P");
    if partial {
        content = content.strip_suffix(b"\n").unwrap_or(content);
    }
    Ok(CriRecord {
        timestamp,
        stderr,
        content,
    })
}

/// The offset of the first of the last `lines` lines of `file` (upstream's
/// `tail.FindTailLineStartIndex`): the start of the file when it has fewer.
pub fn tail_start(file: &mut (impl Read + Seek), lines: u64) -> io::Result<u64> {
    const BLOCK: u64 = 4096;
    let size = file.seek(SeekFrom::End(0))?;
    // Newlines seen from the end; the line starting after the (lines+1)-th one from the end
    // is the first one wanted (the file's last byte is normally a newline itself).
    let mut newlines = 0u64;
    let mut right = size;
    let mut buf = vec![0u8; BLOCK as usize];
    while right > 0 {
        let left = right.saturating_sub(BLOCK);
        let chunk = &mut buf[..(right - left) as usize];
        file.seek(SeekFrom::Start(left))?;
        file.read_exact(chunk)?;
        for (i, byte) in chunk.iter().enumerate().rev() {
            if *byte == b'\n' {
                newlines += 1;
                if newlines > lines {
                    return Ok(left + i as u64 + 1);
                }
            }
        }
        right = left;
    }
    Ok(0)
}

/// Turns records into the bytes the client gets (upstream's `logWriter`).
struct LogWriter<'a> {
    options: &'a LogOptions,
    /// Bytes still allowed by `limitBytes`.
    remaining: Option<u64>,
    /// Whether the next record starts a line (the previous one was not partial).
    at_line_start: bool,
}

impl LogWriter<'_> {
    /// Appends the record's output to `out`; false once `limitBytes` is reached.
    fn write(&mut self, record: &CriRecord<'_>, out: &mut Vec<u8>) -> bool {
        let starts_line = std::mem::replace(
            &mut self.at_line_start,
            record.content.is_empty() || record.content.ends_with(b"\n"),
        );
        if self
            .options
            .since
            .is_some_and(|since| record.timestamp < since)
        {
            return true;
        }
        let mut line = Vec::with_capacity(record.content.len() + 31);
        if self.options.timestamps && starts_line {
            line.extend_from_slice(
                record
                    .timestamp
                    .strftime(TIMESTAMP_OUT)
                    .to_string()
                    .as_bytes(),
            );
            line.push(b' ');
        }
        line.extend_from_slice(record.content);
        match &mut self.remaining {
            None => {
                out.extend_from_slice(&line);
                true
            }
            Some(remaining) => {
                let taken = line.len().min(*remaining as usize);
                out.extend_from_slice(&line[..taken]);
                *remaining -= taken as u64;
                *remaining > 0
            }
        }
    }
}

/// Streams the CRI log at `path` to `send` as upstream's `ReadLogs`: with `follow`, keeps
/// reading as the file grows (and across a rotation to a new file at the same path) for as
/// long as `running` says the container runs. Returns when done or when `send` reports the
/// client gone (false).
pub fn stream_logs(
    path: &Path,
    options: &LogOptions,
    running: &dyn Fn() -> bool,
    send: &mut dyn FnMut(Bytes) -> bool,
) -> io::Result<()> {
    let mut file = File::open(path)?;
    let start = match options.tail_lines {
        Some(lines) => tail_start(&mut file, lines)?,
        None => 0,
    };
    file.seek(SeekFrom::Start(start))?;
    let mut reader = BufReader::new(file);
    // A tail without follow ends after that many records.
    let mut records_left = options.tail_lines.filter(|_| !options.follow);
    let mut writer = LogWriter {
        options,
        remaining: options.limit_bytes,
        at_line_start: true,
    };
    let mut line = Vec::new();
    let mut out = Vec::new();
    let mut last_look = false;
    loop {
        if records_left == Some(0) {
            break;
        }
        reader.read_until(b'\n', &mut line)?;
        let complete = line.ends_with(b"\n");
        if !complete {
            // End of the file for now; an unfinished line is read again once it is complete.
            if !out.is_empty() && !send(Bytes::from(std::mem::take(&mut out))) {
                return Ok(());
            }
            if !options.follow || last_look {
                if !line.is_empty() {
                    emit(&line, &mut writer, &mut out);
                    send(Bytes::from(std::mem::take(&mut out)));
                }
                break;
            }
            reader.seek_relative(-(line.len() as i64))?;
            line.clear();
            if rotated(path, reader.get_ref()) {
                reader = BufReader::new(File::open(path)?);
                continue;
            }
            // Once the container stopped, what it wrote is read to the end once more.
            last_look = !running();
            if !last_look {
                std::thread::sleep(FOLLOW_POLL);
            }
            continue;
        }
        if let Some(left) = &mut records_left {
            *left -= 1;
        }
        let more = emit(&line, &mut writer, &mut out);
        line.clear();
        if !more {
            send(Bytes::from(out));
            return Ok(());
        }
        if out.len() >= 32 * 1024 && !send(Bytes::from(std::mem::take(&mut out))) {
            return Ok(());
        }
    }
    if !out.is_empty() {
        send(Bytes::from(out));
    }
    Ok(())
}

/// Writes one file line through `writer`; unparsable lines are skipped as upstream does.
/// False once `limitBytes` is reached.
fn emit(line: &[u8], writer: &mut LogWriter<'_>, out: &mut Vec<u8>) -> bool {
    match parse_cri_record(line) {
        Ok(record) => writer.write(&record, out),
        Err(err) => {
            tracing::debug!(%err, "skipping an unparsable log line");
            true
        }
    }
}

/// Whether the file at `path` is no longer the one open (the runtime rotated the log).
fn rotated(path: &Path, open: &File) -> bool {
    match (std::fs::metadata(path), open.metadata()) {
        (Ok(now), Ok(open)) => now.ino() != open.ino() || now.dev() != open.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LOG: &str = "\
2026-11-28T03:24:01.5Z stdout F one
2026-11-28T03:24:02.000000001Z stderr F two
2026-11-28T03:24:03.123456789Z stdout P thr
2026-11-28T03:24:04Z stdout P e
2026-11-28T03:24:05Z stdout F e!
2026-11-28T03:24:06Z stdout F four
";

    fn read(log: &str, options: LogOptions) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, log).unwrap();
        let mut out = Vec::new();
        stream_logs(&path, &options, &|| false, &mut |b| {
            out.extend_from_slice(&b);
            true
        })
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parses_cri_records() {
        assert_eq!(
            parse_cri_record(b"2026-11-28T03:24:03.123456789Z stderr F hello world\n").unwrap(),
            CriRecord {
                timestamp: at("2026-11-28T03:24:03.123456789Z"),
                stderr: true,
                content: b"hello world\n"
            }
        );
        let partial = parse_cri_record(b"2026-11-28T03:24:03Z stdout P:x part\n").unwrap();
        assert_eq!(partial.content, b"part");
        assert_eq!(
            parse_cri_record(b"2026-11-28T03:24:03Z stdout F \n")
                .unwrap()
                .content,
            b"\n"
        );
        assert_eq!(
            parse_cri_record(b"2026-11-28T03:24:03Z stdin F x\n"),
            Err("unexpected stream type \"stdin\"".into())
        );
        assert!(parse_cri_record(b"yesterday stdout F x\n").is_err());
        assert!(parse_cri_record(b"2026-11-28T03:24:03Z stdout\n").is_err());
    }

    #[test]
    fn strips_prefixes_and_joins_partial_lines() {
        assert_eq!(read(LOG, LogOptions::default()), "one\ntwo\nthree!\nfour\n");
    }

    #[test]
    fn timestamps_prefix_each_line_once_with_nine_digits() {
        let options = LogOptions {
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            read(LOG, options),
            "2026-11-28T03:24:01.500000000Z one\n\
             2026-11-28T03:24:02.000000001Z two\n\
             2026-11-28T03:24:03.123456789Z three!\n\
             2026-11-28T03:24:06.000000000Z four\n"
        );
    }

    #[test]
    fn tail_counts_records_from_the_end() {
        let tail = |n| {
            read(
                LOG,
                LogOptions {
                    tail_lines: Some(n),
                    ..Default::default()
                },
            )
        };
        assert_eq!(tail(0), "");
        assert_eq!(tail(1), "four\n");
        // Records, not lines: the last three are `P e`, `F e!` and `F four`.
        assert_eq!(tail(3), "ee!\nfour\n");
        assert_eq!(tail(100), "one\ntwo\nthree!\nfour\n");
        let mut big = String::new();
        for i in 0..2000 {
            big.push_str(&format!("2026-11-28T03:24:01Z stdout F line {i}\n"));
        }
        assert_eq!(
            read(
                &big,
                LogOptions {
                    tail_lines: Some(2),
                    ..Default::default()
                }
            ),
            "line 1998\nline 1999\n"
        );
    }

    #[test]
    fn since_skips_older_records() {
        let options = LogOptions {
            since: Some(at("2026-11-28T03:24:02.000000001Z")),
            ..Default::default()
        };
        assert_eq!(read(LOG, options), "two\nthree!\nfour\n");
    }

    #[test]
    fn limit_bytes_cuts_the_output() {
        let options = LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(read(LOG, options), "one\ntw");
    }

    #[test]
    fn query_parameters() {
        let now = at("2026-11-28T03:25:00Z");
        let query: Vec<(String, String)> = [
            ("follow", "true"),
            ("tailLines", "5"),
            ("sinceSeconds", "60"),
            ("timestamps", "true"),
            ("limitBytes", "10"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            LogOptions::from_query(&query, now).unwrap(),
            LogOptions {
                follow: true,
                previous: false,
                timestamps: true,
                tail_lines: Some(5),
                since: Some(at("2026-11-28T03:24:00Z")),
                limit_bytes: Some(10),
            }
        );
        let query = vec![("sinceTime".to_string(), "2026-11-28T03:00:00Z".to_string())];
        assert_eq!(
            LogOptions::from_query(&query, now).unwrap().since,
            Some(at("2026-11-28T03:00:00Z"))
        );
        let query = vec![("tailLines".to_string(), "x".to_string())];
        assert!(LogOptions::from_query(&query, now).is_err());
    }

    #[test]
    fn follow_reads_appended_records_until_the_container_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2026-11-28T03:24:01Z stdout F first\n").unwrap();
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (tx, rx) = std::sync::mpsc::channel::<Bytes>();
        let reader = {
            let path = path.clone();
            let running = running.clone();
            std::thread::spawn(move || {
                let options = LogOptions {
                    follow: true,
                    ..Default::default()
                };
                stream_logs(
                    &path,
                    &options,
                    &|| running.load(std::sync::atomic::Ordering::SeqCst),
                    &mut |b| tx.send(b).is_ok(),
                )
                .unwrap();
            })
        };
        let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(&first[..], b"first\n");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        // Half a record first: nothing may come out until its newline is written.
        file.write_all(b"2026-11-28T03:24:02Z stdout F sec")
            .unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        file.write_all(b"ond\n").unwrap();
        assert_eq!(
            &rx.recv_timeout(Duration::from_secs(5)).unwrap()[..],
            b"second\n"
        );
        // The runtime rotates the file: the rest comes from the new one.
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        std::fs::write(&path, "2026-11-28T03:24:03Z stdout F third\n").unwrap();
        assert_eq!(
            &rx.recv_timeout(Duration::from_secs(5)).unwrap()[..],
            b"third\n"
        );
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        reader.join().unwrap();
    }
}
