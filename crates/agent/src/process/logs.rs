//! Container logs in the CRI format the kubelet reads (`<RFC 3339 nano time> <stream> <F|P>
//! <text>`), one file per container run: `<root>/pods/<pod uid>/<container>/<restartCount>.log`.
//!
//! A container writes its stdout and stderr into two FIFOs next to its logs, which it holds
//! open read-write: the agent copies from them into the log file, and a restarted agent
//! resumes copying where the previous one stopped (the container only blocks while nobody
//! reads and the pipe is full).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest line written as one record; longer lines are split into `P` records.
pub const MAX_LINE: usize = 16 * 1024;

/// The size beyond which a log file is rotated to `<n>.log.1`.
pub const ROTATE_BYTES: u64 = 10 * 1024 * 1024;

/// The directory of one container's logs and pipes.
pub fn container_dir(root: &Path, pod_uid: &str, container: &str) -> PathBuf {
    root.join("pods").join(pod_uid).join(container)
}

/// The log file of a container's run.
pub fn log_path(root: &Path, pod_uid: &str, container: &str, restart_count: i32) -> PathBuf {
    container_dir(root, pod_uid, container).join(format!("{restart_count}.log"))
}

/// One record line: timestamp, stream, tag and text.
pub fn record(time: jiff::Timestamp, stream: &str, partial: bool, text: &[u8]) -> Vec<u8> {
    let tag = if partial { "P" } else { "F" };
    let mut line = format!("{time} {stream} {tag} ").into_bytes();
    line.extend_from_slice(text);
    line.push(b'\n');
    line
}

/// A log file shared by a run's stdout and stderr copiers.
pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
}

impl LogFile {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path) -> io::Result<Arc<Mutex<LogFile>>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Arc::new(Mutex::new(LogFile {
            path: path.to_path_buf(),
            file,
            size,
        })))
    }

    /// Appends a record, first rotating the file when it is over [`ROTATE_BYTES`].
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size >= ROTATE_BYTES {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, &rotated)?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }
}

/// Copies `reader` (a container's `stream`, `stdout` or `stderr`) into `log` line by line
/// until the stream ends; a last line without newline is written whole.
pub async fn copy_stream(
    mut reader: impl AsyncRead + Unpin,
    stream: &str,
    log: Arc<Mutex<LogFile>>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 8192];
    loop {
        let read = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buffer[..read]);
        let records = split_records(&mut pending);
        write_records(&log, stream, records);
    }
    if !pending.is_empty() {
        write_records(&log, stream, vec![(false, std::mem::take(&mut pending))]);
    }
}

fn write_records(log: &Mutex<LogFile>, stream: &str, records: Vec<(bool, Vec<u8>)>) {
    let now = jiff::Timestamp::now();
    let mut log = log.lock().unwrap();
    for (partial, text) in records {
        if let Err(err) = log.append(&record(now, stream, partial, &text)) {
            tracing::warn!(path = %log.path.display(), %err, "writing a container log");
        }
    }
}

/// Takes the complete records out of `pending`: `(partial, text)` for each full line, and a
/// partial record for every [`MAX_LINE`] bytes of a longer line. What remains is an
/// unfinished line shorter than `MAX_LINE`.
pub fn split_records(pending: &mut Vec<u8>) -> Vec<(bool, Vec<u8>)> {
    let mut records = Vec::new();
    let mut start = 0;
    loop {
        let rest = &pending[start..];
        match rest.iter().position(|b| *b == b'\n') {
            Some(end) if end <= MAX_LINE => {
                records.push((false, rest[..end].to_vec()));
                start += end + 1;
            }
            _ if rest.len() >= MAX_LINE => {
                records.push((true, rest[..MAX_LINE].to_vec()));
                start += MAX_LINE;
            }
            _ => break,
        }
    }
    pending.drain(..start);
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_cri_lines() {
        let time: jiff::Timestamp = "2026-11-28T03:24:03.123456789Z".parse().unwrap();
        assert_eq!(
            record(time, "stdout", false, b"hello"),
            b"2026-11-28T03:24:03.123456789Z stdout F hello\n"
        );
        let whole: jiff::Timestamp = "2026-11-28T03:24:03.1Z".parse().unwrap();
        assert_eq!(
            record(whole, "stderr", true, b"x"),
            b"2026-11-28T03:24:03.1Z stderr P x\n",
            "Go's RFC3339Nano drops trailing zeros"
        );
    }

    #[test]
    fn long_lines_split_into_partial_records() {
        let mut pending = b"one\ntwo\nthr".to_vec();
        assert_eq!(
            split_records(&mut pending),
            [(false, b"one".to_vec()), (false, b"two".to_vec())]
        );
        assert_eq!(pending, b"thr");
        let mut long = vec![b'a'; MAX_LINE + 10];
        long.push(b'\n');
        assert_eq!(
            split_records(&mut long),
            [(true, vec![b'a'; MAX_LINE]), (false, vec![b'a'; 10])]
        );
        assert!(long.is_empty());
    }

    #[tokio::test]
    async fn copying_writes_each_line_and_rotates_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, vec![b'x'; ROTATE_BYTES as usize]).unwrap();
        let log = LogFile::open(&path).unwrap();
        copy_stream(&b"a\nb"[..], "stdout", log).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(lines, ["stdout F a", "stdout F b"]);
        assert_eq!(
            std::fs::metadata(dir.path().join("0.log.1")).unwrap().len(),
            ROTATE_BYTES
        );
    }
}
