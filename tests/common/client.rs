//! A deliberately dumb HTTP/1.1 client: it writes the request target and the
//! headers byte for byte as given (no URL parsing, no path normalisation, no
//! header merging), which is what the path-trick tests need. One request per
//! connection (`connection: close`); the response is read to EOF.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// A request as it goes on the wire. `target` is the request-target verbatim.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub host: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, host: &str, target: &str) -> Self {
        Self {
            method: method.to_owned(),
            host: host.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(host: &str, target: &str) -> Self {
        Self::new("GET", host, target)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {}\r\n",
            self.method, self.target, self.host
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            head.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        head.push_str("connection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased, in arrival order, repeats kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// The first value of a header in `headers` (names lower-cased), by a name
/// in any case.
pub fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// Sends `request` to `addr` and reads the whole response.
pub async fn send(addr: SocketAddr, request: &Request) -> std::io::Result<Response> {
    exchange(TcpStream::connect(addr), request).await
}

/// Connects, writes `request`, reads the answer, all within [`IO_TIMEOUT`].
async fn exchange(
    connect: impl Future<Output = std::io::Result<TcpStream>>,
    request: &Request,
) -> std::io::Result<Response> {
    let head_only = request.method == "HEAD";
    let exchange = async {
        let mut stream = connect.await?;
        stream.set_nodelay(true)?;
        stream.write_all(&request.to_bytes()).await?;
        read_response(&mut stream, head_only).await
    };
    tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "HTTP exchange"))?
}

/// As [`send`], from a socket bound to `source` (any address of 127.0.0.0/8
/// works on loopback): many clients, as Envoy's `source.address` sees them.
pub async fn send_from(
    addr: SocketAddr,
    source: std::net::Ipv4Addr,
    request: &Request,
) -> std::io::Result<Response> {
    let connect = async move {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        socket.connect(addr).await
    };
    exchange(connect, request).await
}

/// Reads until the response is complete rather than until EOF: after a local
/// reply Envoy may hold the connection open for its delayed-close timeout.
async fn read_response(stream: &mut TcpStream, head_only: bool) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        raw.extend_from_slice(&buf[..n]);
        let parsed = parse_response(&raw, head_only);
        match parsed {
            Ok(response) if n == 0 || is_complete(&response, head_only) => {
                return Ok(response);
            }
            Err(e) if n == 0 => {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
            _ => {}
        }
    }
}

/// Whether a successfully parsed `response` is the whole message.
fn is_complete(response: &Response, head_only: bool) -> bool {
    if head_only || response.status == 204 || response.status == 304 {
        return true;
    }
    // parse_response succeeded, so a declared length or the last chunk has
    // been read; otherwise the body runs to EOF.
    is_chunked(response) || response.header("content-length").is_some()
}

fn is_chunked(response: &Response) -> bool {
    response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
}

fn parse_response(raw: &[u8], head_only: bool) -> Result<Response, String> {
    let split = find(raw, b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|e| e.to_string())?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let body = if head_only || status == 204 || status == 304 {
        Vec::new()
    } else if is_chunked(&response) {
        decode_chunked(rest)?
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad content-length {len}"))?;
        rest.get(..len)
            .ok_or("body shorter than content-length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { body, ..response })
}

fn decode_chunked(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|e| e.to_string())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_bodies() {
        let plain = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi";
        let r = parse_response(plain, false).unwrap();
        assert_eq!(
            (r.status, r.header("x-a"), r.text().as_str()),
            (401, Some("b"), "hi")
        );

        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked, false).unwrap().text(), "abcde");
    }
}
