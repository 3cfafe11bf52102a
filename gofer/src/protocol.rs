//! The gofer wire protocol: the messages and their encoding.
//!
//! One request and one reply are each exactly one `SOCK_SEQPACKET` message,
//! encoded with bincode 2 (standard configuration) and at most
//! [`MAX_MESSAGE`] bytes long. The client sends a [`Request`], the server
//! answers with exactly one [`Response`]; there is never more than one
//! request in flight, so no tags are needed. A reply to `Open` or `WalkOpen`
//! carries the opened host fd as `SCM_RIGHTS` ancillary data; no other
//! message carries fds, and fds sent to the server are closed unread.
//!
//! Files are named by [`Handle`]s, ids of `O_PATH` fds that the server keeps
//! (the model of gVisor's lisafs). `Attach` gives the root handle; `Walk`
//! goes down one or more single path components and gives a handle and a
//! [`FileStat`] for each; `WalkStat` (lisafs's WalkStat) does the same walk
//! in the same one round trip but keeps no handle, so that a `stat` of a
//! deep path or of every file of a tree costs the server no fd. The gofer follows no symlink and no `..`: a symlink
//! is reported as such and the Sentry, which owns path resolution, reads it
//! with `ReadLink` and walks its target itself; `..` is resolved by the
//! Sentry from its own dentry tree, so a `..` name is refused.
//!
//! A failed operation is answered with [`Response::Error`] carrying a Linux
//! errno that the Sentry can give to the application. A message that cannot
//! be decoded is answered with `EINVAL`, a message that is too long with
//! `EMSGSIZE`.
//!
//! Handles are host-specific (they name server-side fds) and must never be
//! saved in a statefile: restore walks the container path again and checks
//! the file against its saved [`Fingerprint`].

use serde::{Deserialize, Serialize};

use crate::error::GoferError;

/// Version sent with `Attach`; a server that speaks another one refuses with
/// `EPROTO`.
///
/// Version 3 added `WalkStat`, stats in `ReadDir`, `ReadDirAt` and
/// `SetAttr`.
pub const PROTOCOL_VERSION: u32 = 3;

/// The largest message, request or reply, in bytes. Well under the default
/// socket send buffer, so one message always fits in one packet.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The most names one `Walk` request may carry; the client splits longer
/// walks into several requests.
pub const MAX_WALK_NAMES: usize = 64;

/// The longest single name (Linux `NAME_MAX`).
pub const MAX_NAME: usize = 255;

/// The longest path in `WalkOpen` and the longest symlink target (Linux
/// `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// The most entries one directory listing may have; a larger directory is
/// refused with `EOVERFLOW` rather than held in memory.
pub const MAX_DIR_ENTRIES: usize = 1 << 20;

/// A server-side file: an id naming an `O_PATH` fd confined to the root.
///
/// Only meaningful on the connection that produced it; never save it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Handle(pub(crate) u64);

impl Handle {
    /// The id, for logs.
    pub fn id(&self) -> u64 {
        self.0
    }
}

/// The kind of a file, as in the `S_IFMT` bits of its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    /// The host did not say (`DT_UNKNOWN` in a listing); `Stat` tells.
    Unknown,
}

impl FileType {
    /// The type given by a full `st_mode`.
    pub fn from_mode(mode: u32) -> FileType {
        match mode & libc::S_IFMT {
            libc::S_IFREG => FileType::Regular,
            libc::S_IFDIR => FileType::Directory,
            libc::S_IFLNK => FileType::Symlink,
            libc::S_IFCHR => FileType::CharDevice,
            libc::S_IFBLK => FileType::BlockDevice,
            libc::S_IFIFO => FileType::Fifo,
            libc::S_IFSOCK => FileType::Socket,
            _ => FileType::Unknown,
        }
    }

    /// The `DT_*` value of this type, for `getdents64`.
    pub fn dirent_type(self) -> u8 {
        match self {
            FileType::Regular => libc::DT_REG,
            FileType::Directory => libc::DT_DIR,
            FileType::Symlink => libc::DT_LNK,
            FileType::CharDevice => libc::DT_CHR,
            FileType::BlockDevice => libc::DT_BLK,
            FileType::Fifo => libc::DT_FIFO,
            FileType::Socket => libc::DT_SOCK,
            FileType::Unknown => libc::DT_UNKNOWN,
        }
    }
}

/// What a Linux `stat` reports about a host file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: i64,
    pub blksize: i64,
    pub blocks: i64,
    pub atime_sec: i64,
    pub atime_nsec: i64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
    pub ctime_sec: i64,
    pub ctime_nsec: i64,
}

impl FileStat {
    /// The file's type.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode)
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type() == FileType::Symlink
    }

    /// What a statefile keeps to check on restore that a path still names the
    /// same file.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            dev: self.dev,
            ino: self.ino,
            size: self.size,
            mtime_sec: self.mtime_sec,
            mtime_nsec: self.mtime_nsec,
        }
    }
}

/// Identity and version of a host file, saved with the file's container path
/// so that restore can refuse a file that changed. These are the only host
/// values that may enter a statefile, and only for this comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    pub dev: u64,
    pub ino: u64,
    pub size: i64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
}

/// One entry of a directory listing. `.` and `..` are never listed: the
/// Sentry makes those from its own tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// The name, as bytes: host names need not be UTF-8.
    pub name: Vec<u8>,
    pub ino: u64,
    pub file_type: FileType,
    /// The entry's own stat (`fstatat` with `AT_SYMLINK_NOFOLLOW`), when the
    /// listing was asked with stats and the host could give it.
    pub stat: Option<FileStat>,
}

impl DirEntry {
    /// The name for display.
    pub fn name_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    ReadOnly,
    WriteOnly,
    ReadWrite,
}

/// The flags of `Open`. The server always adds `O_CLOEXEC`, `O_NOCTTY` and
/// `O_NOFOLLOW` and never creates a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OpenFlags {
    pub access: Access,
    /// `O_TRUNC`.
    pub truncate: bool,
    /// `O_APPEND`.
    pub append: bool,
}

impl OpenFlags {
    pub const READ_ONLY: OpenFlags = OpenFlags {
        access: Access::ReadOnly,
        truncate: false,
        append: false,
    };
    pub const READ_WRITE: OpenFlags = OpenFlags {
        access: Access::ReadWrite,
        truncate: false,
        append: false,
    };
    pub const WRITE_ONLY: OpenFlags = OpenFlags {
        access: Access::WriteOnly,
        truncate: false,
        append: false,
    };

    /// The gofer's part of an application's `open(2)` flags: access mode,
    /// `O_TRUNC` and `O_APPEND`. Everything else (`O_CREAT`, `O_NONBLOCK`,
    /// `O_DIRECTORY`, ...) is the Sentry's business.
    pub fn from_linux(flags: i32) -> OpenFlags {
        let access = match flags & libc::O_ACCMODE {
            libc::O_WRONLY => Access::WriteOnly,
            libc::O_RDWR => Access::ReadWrite,
            // O_RDONLY, and the odd access mode 3, which Linux treats as
            // "no access"; reading is the least it can mean.
            _ => Access::ReadOnly,
        };
        OpenFlags {
            access,
            truncate: flags & libc::O_TRUNC != 0,
            append: flags & libc::O_APPEND != 0,
        }
    }

    /// Whether the open may change the file.
    pub fn modifies(&self) -> bool {
        self.access != Access::ReadOnly || self.truncate
    }
}

/// One component reached by a walk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkedNode {
    pub handle: Handle,
    pub stat: FileStat,
}

/// Why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalkStatus {
    /// Every name was reached; the last node may itself be a symlink.
    Complete,
    /// The last node is a symlink and names remain after it: the Sentry reads
    /// the link and goes on from its target.
    Symlink,
    /// The name after the last node could not be reached (`ENOENT` when it
    /// does not exist, `ENOTDIR` when the last node is not a directory).
    Failed { errno: i32 },
}

/// The result of a walk: one node per name reached, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Walk {
    pub nodes: Vec<WalkedNode>,
    pub status: WalkStatus,
}

/// The result of a `WalkStat`: a stat per name reached, in order, and why
/// the walk stopped (as for [`Walk`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkStats {
    pub stats: Vec<FileStat>,
    pub status: WalkStatus,
}

/// A time to set with `SetAttr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetTime {
    pub sec: i64,
    /// 0..1_000_000_000.
    pub nsec: i64,
}

/// What `SetAttr` changes; `None` leaves an attribute as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAttr {
    /// Permission bits (`0o7777`), as `chmod(2)`.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// A regular file's new length, as `truncate(2)`.
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
}

impl SetAttr {
    pub fn is_empty(&self) -> bool {
        *self == SetAttr::default()
    }
}

/// A request from the Sentry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Start a session; answered with `Attached`.
    Attach { version: u32 },
    /// Go down from `dir` through single-component `names`; answered with
    /// `Walked`. A name must not be empty, `.`, `..`, or contain `/` or NUL.
    Walk { dir: Handle, names: Vec<Vec<u8>> },
    /// The walk of `Walk`, with the same rules and stops, answered with
    /// `WalkedStat`: stats only, no handle is made (since version 3).
    WalkStat { dir: Handle, names: Vec<Vec<u8>> },
    /// Open the file as a host fd; answered with `Opened` and the fd.
    Open { handle: Handle, flags: OpenFlags },
    /// Open a relative path below `dir` without making handles; answered with
    /// `Opened` and the fd. No component may be a symlink (`ELOOP`: the
    /// Sentry falls back to `Walk`) or `..`.
    WalkOpen {
        dir: Handle,
        path: Vec<u8>,
        flags: OpenFlags,
    },
    /// Answered with `Stat`.
    Stat { handle: Handle },
    /// A page of the listing of a directory, from the entry numbered
    /// `offset`; answered with `DirEntries`. Offset 0 takes a new snapshot of
    /// the directory. With `stats` (since version 3) each entry carries its
    /// stat, and a page holds fewer entries.
    ReadDir {
        handle: Handle,
        offset: u64,
        stats: bool,
    },
    /// The listing of the directory `names` below `dir` (the walk of
    /// `WalkStat`; empty `names`: `dir` itself), without a handle to it,
    /// answered with `DirEntriesAt`: its stat and its entries if they fit in
    /// one reply (since version 3). So listing every directory of a tree
    /// costs the server no fd per directory.
    ReadDirAt {
        dir: Handle,
        names: Vec<Vec<u8>>,
        stats: bool,
    },
    /// Answered with `Link`.
    ReadLink { handle: Handle },
    /// Forget a handle; answered with `Closed`.
    Close { handle: Handle },
    /// Make the regular file `name` (it must not exist) in directory `dir`
    /// with permission bits `mode`; answered with `Walked`, its one node.
    /// Refused with `EROFS` by a read-only gofer.
    Create {
        dir: Handle,
        name: Vec<u8>,
        mode: u32,
    },
    /// Make the directory `name` in `dir`; answered with `Walked`, its one
    /// node (since version 2, as are the three below). `EROFS` read-only.
    Mkdir {
        dir: Handle,
        name: Vec<u8>,
        mode: u32,
    },
    /// Make the symlink `name` in `dir` reading `target`; answered with
    /// `Walked`.
    Symlink {
        dir: Handle,
        name: Vec<u8>,
        target: Vec<u8>,
    },
    /// Remove `name` from `dir` (a directory, empty, with `rmdir`);
    /// answered with `Done`.
    Unlink {
        dir: Handle,
        name: Vec<u8>,
        rmdir: bool,
    },
    /// Move `old_name` of `old_dir` to `new_name` of `new_dir`, replacing
    /// what is there unless `noreplace`; answered with `Done`.
    Rename {
        old_dir: Handle,
        old_name: Vec<u8>,
        new_dir: Handle,
        new_name: Vec<u8>,
        noreplace: bool,
    },
    /// Changes the attributes of the file (since version 3): mode, owner
    /// and times on the handle itself (`fchmodat2`/`fchownat`/`utimensat`
    /// with `AT_EMPTY_PATH`, never through a name, so no symlink swapped in
    /// meanwhile is followed), the size through a reopen checked to be the
    /// same inode. Answered with `Stat`, the new attributes; `EROFS` from a
    /// read-only gofer.
    SetAttr { handle: Handle, attr: SetAttr },
}

/// A reply from the gofer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Error {
        errno: i32,
    },
    Attached {
        root: Handle,
    },
    Walked(Walk),
    WalkedStat(WalkStats),
    /// The fd travels as `SCM_RIGHTS`.
    Opened {
        stat: FileStat,
    },
    Stat {
        stat: FileStat,
    },
    /// `next` is the offset of the following page, `None` at the end.
    DirEntries {
        entries: Vec<DirEntry>,
        next: Option<u64>,
    },
    /// `complete` is false (and `entries` only the beginning) when the
    /// listing does not fit in one reply: page through it with a handle.
    DirEntriesAt {
        stat: FileStat,
        entries: Vec<DirEntry>,
        complete: bool,
    },
    Link {
        target: Vec<u8>,
    },
    Closed,
    /// An operation that answers nothing else succeeded.
    Done,
}

/// What decoding one message may allocate. bincode counts a container's
/// in-memory size against its limit (a `DirEntry` is 40 bytes in memory but
/// can be 4 on the wire), so this is a bound on memory, not on the message,
/// whose length the socket already bounds. It makes the decoder refuse a
/// length prefix claiming more before it allocates for it.
const DECODE_LIMIT: usize = 32 * MAX_MESSAGE;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encodes a message, refusing one longer than [`MAX_MESSAGE`].
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, GoferError> {
    let bytes = bincode::serde::encode_to_vec(msg, config())
        .map_err(|e| GoferError::Protocol(e.to_string()))?;
    if bytes.len() > MAX_MESSAGE {
        return Err(GoferError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// How many bytes `part` takes inside an encoded message (`usize::MAX` if
/// it cannot be encoded), for filling a reply up to [`MAX_MESSAGE`].
pub(crate) fn encoded_len<T: Serialize>(part: &T) -> usize {
    bincode::serde::encode_to_vec(part, config()).map_or(usize::MAX, |v| v.len())
}

/// Decodes one whole message; trailing bytes are an error.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, GoferError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(GoferError::TooLarge(bytes.len()));
    }
    let (msg, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| GoferError::Protocol(e.to_string()))?;
    if used != bytes.len() {
        return Err(GoferError::Protocol(format!(
            "{} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat() -> FileStat {
        FileStat {
            dev: 1,
            ino: 2,
            mode: libc::S_IFREG | 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            size: 10,
            blksize: 4096,
            blocks: 8,
            atime_sec: 1,
            atime_nsec: 2,
            mtime_sec: 3,
            mtime_nsec: 4,
            ctime_sec: 5,
            ctime_nsec: 6,
        }
    }

    #[test]
    fn round_trip() {
        let reqs = vec![
            Request::Attach { version: 1 },
            Request::Walk {
                dir: Handle(3),
                names: vec![b"a".to_vec(), vec![0xff, 0xfe]],
            },
            Request::Open {
                handle: Handle(u64::MAX),
                flags: OpenFlags::READ_WRITE,
            },
            Request::ReadDir {
                handle: Handle(1),
                offset: 7,
                stats: true,
            },
            Request::WalkStat {
                dir: Handle(2),
                names: vec![b"usr".to_vec(), b"lib".to_vec()],
            },
            Request::SetAttr {
                handle: Handle(4),
                attr: SetAttr {
                    mode: Some(0o4755),
                    uid: None,
                    gid: Some(7),
                    size: Some(u64::MAX),
                    atime: Some(SetTime { sec: -1, nsec: 5 }),
                    mtime: None,
                },
            },
        ];
        for r in reqs {
            let back: Request = decode(&encode(&r).unwrap()).unwrap();
            assert_eq!(back, r);
        }
        let resp = Response::Walked(Walk {
            nodes: vec![WalkedNode {
                handle: Handle(9),
                stat: stat(),
            }],
            status: WalkStatus::Failed {
                errno: libc::ENOENT,
            },
        });
        let back: Response = decode(&encode(&resp).unwrap()).unwrap();
        assert_eq!(back, resp);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode::<Request>(&[]).is_err());
        assert!(decode::<Request>(&[0xff; 16]).is_err());
        // A Walk whose name count claims far more than the message holds.
        let mut huge = encode(&Request::Walk {
            dir: Handle(1),
            names: vec![],
        })
        .unwrap();
        huge.pop();
        huge.extend_from_slice(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(decode::<Request>(&huge).is_err());
        // Trailing bytes.
        let mut extra = encode(&Request::Attach { version: 1 }).unwrap();
        extra.push(0);
        assert!(decode::<Request>(&extra).is_err());
    }

    #[test]
    fn worst_case_walk_reply_fits() {
        let node = WalkedNode {
            handle: Handle(u64::MAX),
            stat: FileStat {
                dev: u64::MAX,
                ino: u64::MAX,
                mode: u32::MAX,
                nlink: u64::MAX,
                uid: u32::MAX,
                gid: u32::MAX,
                rdev: u64::MAX,
                size: i64::MIN,
                blksize: i64::MIN,
                blocks: i64::MIN,
                atime_sec: i64::MIN,
                atime_nsec: i64::MIN,
                mtime_sec: i64::MIN,
                mtime_nsec: i64::MIN,
                ctime_sec: i64::MIN,
                ctime_nsec: i64::MIN,
            },
        };
        let resp = Response::Walked(Walk {
            nodes: vec![node.clone(); MAX_WALK_NAMES],
            status: WalkStatus::Complete,
        });
        assert!(encode(&resp).is_ok());
        let resp = Response::WalkedStat(WalkStats {
            stats: vec![node.stat.clone(); MAX_WALK_NAMES],
            status: WalkStatus::Failed { errno: i32::MIN },
        });
        assert!(encode(&resp).is_ok());
        let req = Request::Walk {
            dir: Handle(u64::MAX),
            names: vec![vec![b'x'; MAX_NAME]; MAX_WALK_NAMES],
        };
        assert!(encode(&req).is_ok());
    }

    #[test]
    fn linux_flags() {
        assert_eq!(OpenFlags::from_linux(libc::O_RDONLY), OpenFlags::READ_ONLY);
        let f = OpenFlags::from_linux(libc::O_WRONLY | libc::O_TRUNC | libc::O_CREAT);
        assert_eq!(f.access, Access::WriteOnly);
        assert!(f.truncate && !f.append && f.modifies());
        let f = OpenFlags::from_linux(libc::O_RDONLY | libc::O_TRUNC);
        assert!(f.modifies());
        assert!(!OpenFlags::READ_ONLY.modifies());
    }

    #[test]
    fn fingerprint_has_only_identity() {
        let s = stat();
        let f = s.fingerprint();
        assert_eq!(
            (f.dev, f.ino, f.size, f.mtime_sec, f.mtime_nsec),
            (1, 2, 10, 3, 4)
        );
        let mut t = s.clone();
        t.atime_sec = 99;
        assert_eq!(t.fingerprint(), f);
        t.mtime_nsec = 5;
        assert_ne!(t.fingerprint(), f);
    }
}
