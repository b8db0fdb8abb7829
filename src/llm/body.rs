//! Reading a response body within a size cap, telling a whole body from one cut off.

/// A response body as far as it was read.
pub(super) enum Body {
    /// Everything the server sent.
    Whole(String),
    /// The connection broke before the end: what arrived, and why it stopped.
    Cut(String, String),
    /// More than the cap: the first `cap` bytes, and the length announced or reached.
    Oversize(String, u64),
}

/// Read `resp`'s body, stopping once it passes `cap` bytes (a `Content-Length` above the cap
/// stops it before reading anything).
pub(super) async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Body {
    if let Some(len) = resp.content_length()
        && len > cap as u64
    {
        return Body::Oversize(String::new(), len);
    }
    let mut bytes: Vec<u8> = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > cap {
                    let total = (bytes.len() + chunk.len()) as u64;
                    bytes.extend_from_slice(&chunk[..cap - bytes.len()]);
                    return Body::Oversize(lossy(bytes), total);
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Body::Whole(lossy(bytes)),
            Err(e) => return Body::Cut(lossy(bytes), super::wire::error_chain(&e)),
        }
    }
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
