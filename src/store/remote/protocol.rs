//! The frames a store's holder and its remote readers exchange over their socket.
//!
//! Every frame is a little-endian `u32` length and that many bytes. A request is an operation
//! byte, the tree's name and the operation's fields; a reply is a status byte (0 ok, 1 refused
//! with a message) and the operation's result. Byte strings are a `u32` length and the bytes.

use std::io::{Read, Write};

use anyhow::{Context, Result, bail};

/// The largest frame either side accepts: a scan of a store's image records fits many times.
const MAX_FRAME: usize = 1 << 30;

/// One operation on a tree of the store (`""` names the cache's own records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Who holds the store: answered with [`Reply::Holder`].
    Hello,
    /// The value under a key.
    Get { tree: String, key: Vec<u8> },
    /// Every pair whose key starts with a prefix, in key order.
    Scan { tree: String, prefix: Vec<u8> },
    /// Write a value under a key (user trees only).
    Insert {
        tree: String,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Delete a key (user trees only).
    Remove { tree: String, key: Vec<u8> },
    /// Make a tree's writes durable.
    Flush { tree: String },
}

/// The answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The holder's process id and what it is running.
    Holder { pid: u32, command: String },
    /// A value, or none under that key.
    Value(Option<Vec<u8>>),
    /// The pairs of a scan.
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    /// A write or flush took effect.
    Done,
    /// The holder refused or failed the request, and why.
    Refused(String),
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend((b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// A cursor over a received frame.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            bail!("a store frame ended {} bytes early", n - self.0.len());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    fn string(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?).context("a store frame holds a name that is not UTF-8")
    }

    fn end(&self) -> Result<()> {
        if !self.0.is_empty() {
            bail!("a store frame has {} bytes left over", self.0.len());
        }
        Ok(())
    }
}

impl Request {
    /// The tree the request is about (none for [`Request::Hello`]).
    pub(crate) fn tree(&self) -> Option<&str> {
        match self {
            Request::Hello => None,
            Request::Get { tree, .. }
            | Request::Scan { tree, .. }
            | Request::Insert { tree, .. }
            | Request::Remove { tree, .. }
            | Request::Flush { tree } => Some(tree),
        }
    }

    /// Whether the request changes the store.
    pub(crate) fn writes(&self) -> bool {
        matches!(
            self,
            Request::Insert { .. } | Request::Remove { .. } | Request::Flush { .. }
        )
    }

    /// The request as a frame body.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let (op, fields): (u8, Vec<&[u8]>) = match self {
            Request::Hello => (0, vec![]),
            Request::Get { tree, key } => (1, vec![tree.as_bytes(), key]),
            Request::Scan { tree, prefix } => (2, vec![tree.as_bytes(), prefix]),
            Request::Insert { tree, key, value } => (3, vec![tree.as_bytes(), key, value]),
            Request::Remove { tree, key } => (4, vec![tree.as_bytes(), key]),
            Request::Flush { tree } => (5, vec![tree.as_bytes()]),
        };
        out.push(op);
        for f in fields {
            put_bytes(&mut out, f);
        }
        out
    }

    /// Read a request from a frame body.
    pub(crate) fn decode(body: &[u8]) -> Result<Request> {
        let mut f = Fields(body);
        let r = match f.u8()? {
            0 => Request::Hello,
            1 => Request::Get {
                tree: f.string()?,
                key: f.bytes()?,
            },
            2 => Request::Scan {
                tree: f.string()?,
                prefix: f.bytes()?,
            },
            3 => Request::Insert {
                tree: f.string()?,
                key: f.bytes()?,
                value: f.bytes()?,
            },
            4 => Request::Remove {
                tree: f.string()?,
                key: f.bytes()?,
            },
            5 => Request::Flush { tree: f.string()? },
            op => bail!("unknown store operation {op}"),
        };
        f.end()?;
        Ok(r)
    }
}

impl Reply {
    /// The reply as a frame body.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Reply::Holder { pid, command } => {
                out.push(0);
                out.push(0);
                out.extend(pid.to_le_bytes());
                put_bytes(&mut out, command.as_bytes());
            }
            Reply::Value(v) => {
                out.push(0);
                out.push(1);
                out.push(u8::from(v.is_some()));
                if let Some(v) = v {
                    put_bytes(&mut out, v);
                }
            }
            Reply::Pairs(pairs) => {
                out.push(0);
                out.push(2);
                out.extend((pairs.len() as u32).to_le_bytes());
                for (k, v) in pairs {
                    put_bytes(&mut out, k);
                    put_bytes(&mut out, v);
                }
            }
            Reply::Done => out.extend([0, 3]),
            Reply::Refused(why) => {
                out.push(1);
                put_bytes(&mut out, why.as_bytes());
            }
        }
        out
    }

    /// Read a reply from a frame body.
    pub(crate) fn decode(body: &[u8]) -> Result<Reply> {
        let mut f = Fields(body);
        let r = match f.u8()? {
            1 => Reply::Refused(f.string()?),
            0 => match f.u8()? {
                0 => Reply::Holder {
                    pid: f.u32()?,
                    command: f.string()?,
                },
                1 => Reply::Value(match f.u8()? {
                    0 => None,
                    _ => Some(f.bytes()?),
                }),
                2 => {
                    let n = f.u32()? as usize;
                    let mut pairs = Vec::with_capacity(n.min(1 << 16));
                    for _ in 0..n {
                        pairs.push((f.bytes()?, f.bytes()?));
                    }
                    Reply::Pairs(pairs)
                }
                3 => Reply::Done,
                kind => bail!("unknown store reply kind {kind}"),
            },
            status => bail!("unknown store reply status {status}"),
        };
        f.end()?;
        Ok(r)
    }
}

/// Write one frame.
pub(crate) fn write_frame(w: &mut impl Write, body: &[u8]) -> std::io::Result<()> {
    w.write_all(&(body.len() as u32).to_le_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Read one frame; `None` at a clean end of the stream.
pub(crate) fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        bail!("a store frame claims {len} bytes, more than the {MAX_FRAME} allowed");
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip() {
        let requests = [
            Request::Hello,
            Request::Get {
                tree: String::new(),
                key: b"p".to_vec(),
            },
            Request::Scan {
                tree: "labels".into(),
                prefix: vec![],
            },
            Request::Insert {
                tree: "lists".into(),
                key: b"a".to_vec(),
                value: vec![0, 1, 2],
            },
            Request::Remove {
                tree: "lists".into(),
                key: b"a".to_vec(),
            },
            Request::Flush {
                tree: "pages".into(),
            },
        ];
        for r in requests {
            assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }
        let replies = [
            Reply::Holder {
                pid: 42,
                command: "glint --batch cache".into(),
            },
            Reply::Value(None),
            Reply::Value(Some(vec![])),
            Reply::Value(Some(vec![9; 300])),
            Reply::Pairs(vec![(b"k".to_vec(), b"v".to_vec()), (vec![], vec![1])]),
            Reply::Done,
            Reply::Refused("no".into()),
        ];
        for r in replies {
            assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn truncated_or_padded_frames_are_errors() {
        let body = Request::Get {
            tree: "t".into(),
            key: b"key".to_vec(),
        }
        .encode();
        assert!(Request::decode(&body[..body.len() - 1]).is_err());
        let mut padded = body.clone();
        padded.push(0);
        assert!(Request::decode(&padded).is_err());
        assert!(Request::decode(&[9]).is_err());
        assert!(Reply::decode(&[0, 7]).is_err());
    }

    #[test]
    fn frames_stream_and_end_cleanly() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"one").unwrap();
        write_frame(&mut wire, b"").unwrap();
        let mut r = wire.as_slice();
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"one");
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"");
        assert!(read_frame(&mut r).unwrap().is_none());
        let huge = (u32::MAX).to_le_bytes();
        assert!(read_frame(&mut huge.as_slice()).is_err());
    }
}
