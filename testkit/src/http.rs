//! A raw HTTP/1.1 client, over TCP or TLS: tests write the exact bytes of
//! a request and read the response as sent.

use crate::standin;
use crate::IO_TIMEOUT;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        standin::header_values(&self.headers, name).first().copied()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client's stream: plain TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// A client certificate to present: its chain and key, PEM.
#[derive(Clone, Copy, Debug)]
pub struct ClientCert<'a> {
    pub chain: &'a [u8],
    pub key: &'a [u8],
}

/// A connection from source address `from`, bound before it connects: on
/// Linux every `127.x.y.z` is a loopback address, so a test can be 16
/// million clients.
pub fn connect_from(from: impl Into<IpAddr>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let from = from.into();
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// A connection from `from` set up to take as little as the kernel lets
/// it: a maximum segment size of 536 (the smallest IPv4 allows) and the
/// smallest receive buffer. A client that means to read nothing sets it up
/// so; what the proxy writes to it fills the buffers on both sides after a
/// few tens of KB (about 40 KB on loopback), where a normal loopback
/// connection would take megabytes.
pub fn connect_tight_from(from: impl Into<IpAddr>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    use std::os::fd::AsRawFd;
    let from = from.into();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    let mss: libc::c_int = 536;
    // SAFETY: setsockopt(2) on a socket this function owns, with a pointer
    // to a c_int that outlives the call and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            std::ptr::addr_of!(mss).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The kernel raises it to its minimum (SOCK_MIN_RCVBUF).
    socket.set_recv_buffer_size(1)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let stream = TcpStream::from(socket);
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// A TLS client trusting only the certificates in `ca` (PEM, the
/// self-signed fixtures), for the name `localhost`, its handshake complete.
pub fn tls_client(
    addr: SocketAddr,
    ca: &[u8],
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    tls_client_with(addr, ca, None, rustls::DEFAULT_VERSIONS)
}

/// [`tls_client`], presenting `cert` when the server asks for one, with
/// these TLS versions. With TLS 1.3 the client's side of the handshake ends
/// before the server has checked its certificate, so a refusal comes as an
/// alert on the first read; with TLS 1.2 the handshake itself fails.
pub fn tls_client_with(
    addr: SocketAddr,
    ca: &[u8],
    cert: Option<ClientCert>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    pingora::tls::install_default_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        roots.add(cert).map_err(std::io::Error::other)?;
    }
    let builder = rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots);
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some(cert) => {
            let chain = CertificateDer::pem_slice_iter(cert.chain)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            let key = PrivateKeyDer::from_pem_slice(cert.key)
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(std::io::Error::other)?
        }
    };
    let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, connect(addr)?);
    // Bounded: a handshake is a few round trips.
    for _ in 0..100 {
        if !tls.conn.is_handshaking() {
            return Ok(tls);
        }
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Err(std::io::Error::other("the TLS handshake did not finish"))
}

/// One client connection, kept open across requests.
pub struct Conn {
    reader: BufReader<Stream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        Ok(Conn {
            reader: BufReader::new(Stream::Plain(connect(addr)?)),
        })
    }

    /// A connection from source address `from` (a `127.x.y.z`: one client
    /// among many).
    pub fn open_from(from: impl Into<IpAddr>, addr: SocketAddr) -> std::io::Result<Conn> {
        Ok(Conn {
            reader: BufReader::new(Stream::Plain(connect_from(from, addr)?)),
        })
    }

    /// Waits for the server to close the connection (an end of file, or a
    /// reset), up to the read timeout; an error if it sent more bytes
    /// instead, or kept it open.
    pub fn wait_closed(&mut self) -> std::io::Result<()> {
        let mut byte = [0; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => Ok(()),
            Ok(_) => Err(std::io::Error::other(format!(
                "the server sent {:?} instead of closing",
                String::from_utf8_lossy(&byte)
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A TLS connection trusting `ca` (PEM), handshake done.
    pub fn tls(addr: SocketAddr, ca: &[u8]) -> std::io::Result<Conn> {
        Conn::tls_with(addr, ca, None)
    }

    /// [`Conn::tls`], presenting `cert` when the server asks for one.
    pub fn tls_with(
        addr: SocketAddr,
        ca: &[u8],
        cert: Option<ClientCert>,
    ) -> std::io::Result<Conn> {
        let tls = tls_client_with(addr, ca, cert, rustls::DEFAULT_VERSIONS)?;
        Ok(Conn {
            reader: BufReader::new(Stream::Tls(Box::new(tls))),
        })
    }

    /// The certificate the server sent (DER), on a TLS connection.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self.reader.get_ref() {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s.conn.peer_certificates()?.first().map(|c| c.to_vec()),
        }
    }

    pub fn send(&mut self, raw: &[u8]) -> std::io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(raw)?;
        stream.flush()
    }

    /// Sends a request and reads its response. `head` tells whether it was
    /// a HEAD request (whose response has no body).
    pub fn request(&mut self, raw: &[u8]) -> std::io::Result<Response> {
        self.send(raw)?;
        let head = raw.starts_with(b"HEAD ");
        self.read_response(head)
    }

    /// Reads the status line and headers only.
    pub fn read_head(&mut self) -> std::io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        for _ in 0..200 {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        Ok(Response {
            status,
            headers,
            body: Vec::new(),
        })
    }

    /// Reads one chunk of a chunked body; `None` at the last chunk.
    pub fn read_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut size = String::new();
        self.reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {size:?}")))?;
        if size == 0 {
            let mut end = String::new();
            self.reader.read_line(&mut end)?;
            return Ok(None);
        }
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk)?;
        chunk.truncate(size);
        Ok(Some(chunk))
    }

    /// Reads exactly `n` raw bytes (after an upgrade, say).
    pub fn read_exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf)?;
        Ok(buf)
    }

    pub fn read_response(&mut self, head_request: bool) -> std::io::Result<Response> {
        let mut resp = self.read_head()?;
        if head_request || resp.status == 204 || resp.status == 304 || resp.status < 200 {
            return Ok(resp);
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            for _ in 0..1_000_000 {
                match self.read_chunk()? {
                    Some(chunk) => resp.body.extend_from_slice(&chunk),
                    None => break,
                }
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| std::io::Error::other("bad content-length"))?;
            resp.body = vec![0; len];
            self.reader.read_exact(&mut resp.body)?;
        } else {
            self.reader.read_to_end(&mut resp.body)?;
        }
        Ok(resp)
    }
}

/// Sends one raw request on a new connection and reads the response.
pub fn send(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Response> {
    Conn::open(addr)?.request(raw)
}

/// A GET with `Connection: close` and optional extra header lines.
pub fn get(addr: SocketAddr, target: &str, extra: &str) -> Response {
    let raw =
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n");
    send(addr, raw.as_bytes()).unwrap_or_else(|e| panic!("GET {target}: {e}"))
}

/// [`get`], from source address `from`.
pub fn get_from(from: IpAddr, addr: SocketAddr, target: &str, extra: &str) -> Response {
    let raw =
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n");
    Conn::open_from(from, addr)
        .and_then(|mut conn| conn.request(raw.as_bytes()))
        .unwrap_or_else(|e| panic!("GET {target} from {from}: {e}"))
}
