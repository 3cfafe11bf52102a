//! A gofer served in a thread over a socketpair, for the tests.
#![allow(dead_code)]

use std::path::Path;
use std::thread::JoinHandle;

use gofer::{Client, GoferError, Handle, Walk, WalkStatus};

pub struct Served {
    pub client: Client,
    thread: Option<JoinHandle<Result<(), GoferError>>>,
}

impl Served {
    /// Closes the connection and checks that the server ended cleanly.
    pub fn finish(self) {
        let Served { client, thread } = self;
        drop(client);
        let t = thread.expect("server thread");
        t.join().expect("server panicked").expect("server failed");
    }
}

impl std::ops::Deref for Served {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

pub fn serve(root: &Path, read_only: bool) -> Served {
    let (a, b) = gofer::socketpair().expect("socketpair");
    let root = root.to_path_buf();
    let thread = std::thread::spawn(move || gofer::serve(&root, b, read_only));
    Served {
        client: Client::new(a),
        thread: Some(thread),
    }
}

/// The errno of a failed call.
pub fn errno<T: std::fmt::Debug>(r: Result<T, GoferError>) -> i32 {
    match r {
        Err(GoferError::Errno(e)) => e,
        other => panic!("expected an errno, got {other:?}"),
    }
}

/// Walks and expects every name reached.
pub fn walk_all(c: &Client, dir: &Handle, names: &[&str]) -> Walk {
    let w = c.walk(dir, names).expect("walk");
    assert_eq!(w.status, WalkStatus::Complete, "walk {names:?}: {w:?}");
    assert_eq!(w.nodes.len(), names.len());
    w
}

/// The last handle of a complete walk.
pub fn lookup(c: &Client, dir: &Handle, names: &[&str]) -> Handle {
    walk_all(c, dir, names).nodes.last().expect("a node").handle
}

pub fn read_fd(fd: std::os::fd::OwnedFd) -> Vec<u8> {
    use std::io::Read;
    let mut f = std::fs::File::from(fd);
    let mut v = Vec::new();
    f.read_to_end(&mut v).expect("read");
    v
}
