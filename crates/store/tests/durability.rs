//! Every write acknowledged to a caller survives a SIGKILL of the process.
//!
//! The test re-executes its own binary as a child that writes keys from several concurrent
//! writers and prints each acknowledged revision; the parent kills it mid-stream, reopens the
//! database and checks that every acknowledged write is there.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use skiff_store::Store;
use skiff_store::sqlite::SqliteStore;

/// Set in the child: the database it writes to.
const CHILD_DATABASE: &str = "SKIFF_STORE_DURABILITY_DB";
/// Acknowledgements the parent waits for before killing the child.
const ACKS_BEFORE_KILL: usize = 2000;
const WRITERS: usize = 8;

/// The child's work; does nothing in a normal test run.
#[test]
fn durability_child() {
    let Ok(path) = std::env::var(CHILD_DATABASE) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path).unwrap());
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/durable/{writer}/{i}");
                        let revision = store.create(&key, Bytes::from(key.clone())).await.unwrap();
                        // One write per line, so a line is never torn by the kill.
                        let mut stdout = std::io::stdout().lock();
                        writeln!(stdout, "ACK {key} {revision}").unwrap();
                        stdout.flush().unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var_os(CHILD_DATABASE).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "durability_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DATABASE, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut acknowledged = Vec::new();
    let mut killed = false;
    let mut line = String::new();
    // Lines already in the pipe when the child dies were acknowledged too: read to the end.
    while lines.read_line(&mut line).unwrap() > 0 {
        if let Some(ack) = line
            .strip_prefix("ACK ")
            .and_then(|ack| ack.strip_suffix('\n'))
        {
            let (key, revision) = ack.split_once(' ').unwrap();
            acknowledged.push((key.to_owned(), revision.parse::<i64>().unwrap()));
        }
        line.clear();
        if !killed && acknowledged.len() >= ACKS_BEFORE_KILL {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "the child exited on its own: {status}");
    assert!(acknowledged.len() >= ACKS_BEFORE_KILL);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        for (key, revision) in &acknowledged {
            let stored = store.get(key).await.unwrap();
            assert_eq!(
                stored.map(|kv| (kv.mod_revision, kv.value)),
                Some((*revision, Bytes::from(key.clone()))),
                "acknowledged write of {key} at {revision} is missing"
            );
        }
        let last = acknowledged
            .iter()
            .map(|(_, revision)| *revision)
            .max()
            .unwrap();
        let current = store.current_revision().await.unwrap();
        assert!(current >= last);
        // Writing continues after the last revision that made it to disk.
        let next = store.create("/durable/after", Bytes::new()).await.unwrap();
        assert_eq!(next, current + 1);
    });
}
