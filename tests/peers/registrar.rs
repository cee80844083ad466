//! A small registrar/proxy for wake and reconnect tests, on 127.0.0.1 over TCP, built on wakeline's
//! own framer and message types. Std threads, blocking sockets: one acceptor, one reader per
//! connection. Every frame received is logged with its arrival [`Instant`] for measurements.
//!
//! It answers REGISTER with 200 (the Contact echoed with `expires`), answers CRLFCRLF pings with
//! CRLF (switchable), keeps the latest registered connection, and can act as a caller on it
//! ([`Registrar::send_invite`], then [`Leg::ack`] and [`Leg::bye`]). Other requests get 200.
//!
//! Self-contained (no `super::` items) so that `benches/wake.rs` can include it by `#[path]`.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wakeline::signaling::framing::{Frame, Framer, FramerLimits};
use wakeline::signaling::message::{
    new_branch, new_call_id, new_tag, HeaderName, Message, Method, Request, Response, Uri,
};

/// What arrived.
#[derive(Debug, Clone)]
pub enum Rx {
    /// A CRLFCRLF keep-alive ping.
    Ping,
    /// A lone CRLF.
    Pong,
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
    /// The peer closed the connection (EOF or error).
    Closed,
}

/// One logged arrival.
#[derive(Debug, Clone)]
pub struct Received {
    /// When the reader thread had the frame.
    pub at: Instant,
    /// Which connection (numbered from 1 in accept order, over restarts too).
    pub conn: u64,
    /// What.
    pub what: Rx,
}

impl Received {
    /// The request, if this is one with `method`.
    pub fn request(&self, method: &Method) -> Option<&Request> {
        match &self.what {
            Rx::Request(r) if &r.method == method => Some(r),
            _ => None,
        }
    }

    /// The response, if this is one.
    pub fn response(&self) -> Option<&Response> {
        match &self.what {
            Rx::Response(r) => Some(r),
            _ => None,
        }
    }
}

struct Conn {
    id: u64,
    stream: TcpStream,
    bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
}

#[derive(Default)]
struct State {
    log: Vec<Received>,
    conns: Vec<Conn>,
    /// The connection the latest successful REGISTER came on.
    registered: Option<u64>,
    /// The latest registered Contact URI (`sip:...`, without `<>`).
    contact: Option<String>,
    /// When each 200 to a REGISTER was written, with its connection.
    register_ok_at: Vec<(u64, Instant)>,
    pongs_off: bool,
    /// This many next REGISTERs are not answered: their connection is closed instead.
    drop_registers: usize,
    /// Close each connection right after writing its REGISTER 200 (a hostile NAT or SBC).
    close_after_ok: bool,
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    next_conn: AtomicU64,
    port: u16,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The registrar. Stops (closes its listener and connections) when dropped.
pub struct Registrar {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    /// Absorbs the UA's RTP (the SDP we offer points here).
    rtp: UdpSocket,
    /// Datagrams received on `rtp` so far (counted by a thread that lives as long as the socket).
    rtp_packets: Arc<AtomicU64>,
}

/// Per-connection byte counters, as read from and written to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes {
    /// Bytes received from the UA.
    pub received: u64,
    /// Bytes written to the UA.
    pub sent: u64,
}

impl Registrar {
    /// Listens on 127.0.0.1 at a free port.
    pub fn start() -> Registrar {
        Self::start_on(0)
    }

    /// Listens on 127.0.0.1:`port` (0: any free port).
    pub fn start_on(port: u16) -> Registrar {
        let listener = bind(port);
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            next_conn: AtomicU64::new(1),
            port,
        });
        let acceptor = Some(spawn_acceptor(listener, shared.clone()));
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
        let rtp_packets = Arc::new(AtomicU64::new(0));
        let (sock, count) = (rtp.try_clone().expect("rtp clone"), rtp_packets.clone());
        let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            // Ends once the registrar (the other holder of `count`) is gone.
            while Arc::strong_count(&count) > 1 {
                match sock.recv(&mut buf) {
                    Ok(_) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => return,
                }
            }
        });
        Registrar {
            shared,
            acceptor,
            rtp,
            rtp_packets,
        }
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// `sip:127.0.0.1:PORT;transport=tcp`
    pub fn uri(&self) -> String {
        format!("sip:127.0.0.1:{};transport=tcp", self.port())
    }

    /// RTP datagrams the UA has sent to the SDP we offered, so far (all calls).
    pub fn rtp_packets(&self) -> u64 {
        self.rtp_packets.load(Ordering::Relaxed)
    }

    /// Answer pings with CRLF (`true`, the default) or ignore them.
    pub fn set_pongs(&self, on: bool) {
        self.shared.lock().pongs_off = !on;
    }

    /// The next `n` REGISTERs are not answered; their connection is closed abruptly instead (a
    /// server dying in the middle of a registration).
    pub fn drop_next_registers(&self, n: usize) {
        self.shared.lock().drop_registers = n;
    }

    /// Close (`true`) or keep (`false`, the default) each connection right after the 200 to a
    /// REGISTER on it: the registrar or NAT that provokes a REGISTER storm (issue 13).
    pub fn set_close_after_ok(&self, on: bool) {
        self.shared.lock().close_after_ok = on;
    }

    /// A copy of everything received so far.
    pub fn log(&self) -> Vec<Received> {
        self.shared.lock().log.clone()
    }

    /// The connection of the latest successful REGISTER.
    pub fn registered_conn(&self) -> Option<u64> {
        self.shared.lock().registered
    }

    /// When each 200 to a REGISTER was written (taken just before the write), with its
    /// connection.
    pub fn register_ok_times(&self) -> Vec<(u64, Instant)> {
        self.shared.lock().register_ok_at.clone()
    }

    /// Byte counters of a connection (while it is open).
    pub fn bytes(&self, conn: u64) -> Option<Bytes> {
        let st = self.shared.lock();
        st.conns.iter().find(|c| c.id == conn).map(|c| Bytes {
            received: c.bytes_in.load(Ordering::Relaxed),
            sent: c.bytes_out.load(Ordering::Relaxed),
        })
    }

    /// Waits until `pred` holds for the log (checked at every arrival), up to `limit`.
    /// Returns the index of the first entry for which `pred` holds, `None` on timeout.
    pub fn wait_for(
        &self,
        limit: Duration,
        mut pred: impl FnMut(&Received) -> bool,
    ) -> Option<Received> {
        self.wait_from(0, limit, &mut pred).map(|(_, r)| r)
    }

    /// Like [`Registrar::wait_for`], looking only at log entries from index `from` on; returns the
    /// index too.
    pub fn wait_from(
        &self,
        from: usize,
        limit: Duration,
        pred: &mut dyn FnMut(&Received) -> bool,
    ) -> Option<(usize, Received)> {
        let deadline = Instant::now() + limit;
        let mut st = self.shared.lock();
        let mut checked = from;
        loop {
            while checked < st.log.len() {
                if pred(&st.log[checked]) {
                    return Some((checked, st.log[checked].clone()));
                }
                checked += 1;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The number of log entries so far (a cursor for [`Registrar::wait_from`]).
    pub fn log_len(&self) -> usize {
        self.shared.lock().log.len()
    }

    /// Waits for a REGISTER on a connection other than `not_on`, from log index `from`; returns
    /// its log entry. (It is answered before it is logged, unless [`Registrar::drop_next_registers`]
    /// says otherwise.)
    pub fn wait_registered(
        &self,
        from: usize,
        not_on: Option<u64>,
        limit: Duration,
    ) -> Option<Received> {
        self.wait_from(from, limit, &mut |r| {
            r.request(&Method::Register).is_some() && Some(r.conn) != not_on
        })
        .map(|(_, r)| r)
    }

    /// Closes the registered TCP connection abruptly (both directions), as a server crash would.
    /// Returns when it was closed, and which connection it was.
    pub fn drop_connection(&self) -> Option<(u64, Instant)> {
        let mut st = self.shared.lock();
        let id = st.registered?;
        let at = Instant::now();
        if let Some(c) = st.conns.iter().find(|c| c.id == id) {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        st.conns.retain(|c| c.id != id);
        st.registered = None;
        Some((id, at))
    }

    /// Closes the listener and every connection.
    pub fn stop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.stopped = true;
            for c in st.conns.drain(..) {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
            st.registered = None;
        }
        // Wake the blocking accept.
        let _ = TcpStream::connect(("127.0.0.1", self.port()));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }

    /// Binds the same port again and accepts connections (after [`Registrar::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        let listener = bind(self.port());
        self.shared.lock().stopped = false;
        self.acceptor = Some(spawn_acceptor(listener, self.shared.clone()));
    }

    /// Acting for a caller, sends an INVITE with a PCMU offer to the registered Contact over the
    /// registered connection.
    pub fn send_invite(&self) -> Leg {
        self.send_invite_with_call_id(&new_call_id())
    }

    /// [`Registrar::send_invite`] with a chosen Call-ID (the one a push carried).
    pub fn send_invite_with_call_id(&self, call_id: &str) -> Leg {
        let (contact, conn) = {
            let st = self.shared.lock();
            (
                st.contact.clone().expect("nobody registered"),
                st.registered.expect("no registered connection"),
            )
        };
        let rtp_port = self.rtp.local_addr().expect("rtp addr").port();
        let mut leg = Leg {
            shared: self.shared.clone(),
            call_id: call_id.to_string(),
            from_tag: new_tag(),
            to_tag: None,
            target: Uri::parse(&contact).expect("registered contact parses"),
            aor: contact,
            cseq: 1,
            invite_at: Instant::now(),
        };
        let mut req = leg.request(Method::Invite, 1);
        req.headers.push(HeaderName::ContentType, "application/sdp");
        req.body = format!(
            "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
        )
        .into_bytes();
        leg.invite_at = Instant::now();
        write_to(&self.shared, conn, &req.to_bytes());
        leg
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One call placed by [`Registrar::send_invite`].
pub struct Leg {
    shared: Arc<Shared>,
    /// The Call-ID.
    pub call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    /// The remote target (the registered Contact, then the 2xx's Contact).
    target: Uri,
    aor: String,
    cseq: u32,
    /// When the INVITE was written.
    pub invite_at: Instant,
}

impl Leg {
    fn request(&self, method: Method, cseq: u32) -> Request {
        let mut req = Request::new(method.clone(), self.target.clone());
        let port = self.shared.port;
        req.headers.push(
            HeaderName::Via,
            format!("SIP/2.0/TCP 127.0.0.1:{port};branch={}", new_branch()),
        );
        req.headers.push(HeaderName::MaxForwards, "70");
        req.headers.push(
            HeaderName::From,
            format!("<sip:caller@127.0.0.1>;tag={}", self.from_tag),
        );
        let to = match &self.to_tag {
            Some(t) => format!("<{}>;tag={t}", self.aor),
            None => format!("<{}>", self.aor),
        };
        req.headers.push(HeaderName::To, to);
        req.headers.push(HeaderName::CallId, self.call_id.clone());
        req.headers
            .push(HeaderName::CSeq, format!("{cseq} {}", method.as_str()));
        req.headers.push(
            HeaderName::Contact,
            format!("<sip:caller@127.0.0.1:{port};transport=tcp>"),
        );
        req
    }

    /// Waits for a response of this call to `method` with `status` (from any connection).
    pub fn wait_response(&self, method: Method, status: u16, limit: Duration) -> Option<Received> {
        let reg = RegistrarView(&self.shared);
        reg.wait(limit, |r| {
            r.response().is_some_and(|resp| {
                resp.status == status
                    && resp.headers.call_id() == Some(self.call_id.as_str())
                    && resp.headers.cseq().is_some_and(|c| c.method == method)
            })
        })
    }

    /// After the 200 to the INVITE: takes the To tag and Contact from it and sends the ACK on the
    /// registered connection.
    pub fn ack(&mut self, ok: &Response) {
        self.to_tag = ok.headers.to().and_then(|t| t.tag().map(str::to_string));
        if let Some(c) = ok.headers.contacts().first() {
            self.target = c.uri.clone();
        }
        let ack = self.request(Method::Ack, 1);
        self.send(&ack.to_bytes());
    }

    /// Sends a BYE on the currently registered connection (the new one after a reconnect).
    pub fn bye(&mut self) {
        self.cseq += 1;
        let bye = self.request(Method::Bye, self.cseq);
        self.send(&bye.to_bytes());
    }

    fn send(&self, bytes: &[u8]) {
        let conn = self
            .shared
            .lock()
            .registered
            .expect("no registered connection");
        write_to(&self.shared, conn, bytes);
    }
}

struct RegistrarView<'a>(&'a Arc<Shared>);

impl RegistrarView<'_> {
    fn wait(&self, limit: Duration, mut pred: impl FnMut(&Received) -> bool) -> Option<Received> {
        let deadline = Instant::now() + limit;
        let mut st = self.0.lock();
        let mut checked = 0;
        loop {
            while checked < st.log.len() {
                if pred(&st.log[checked]) {
                    return Some(st.log[checked].clone());
                }
                checked += 1;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self
                .0
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn bind(port: u16) -> TcpListener {
    // The old listener may linger for a moment after a stop.
    let start = Instant::now();
    loop {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => return l,
            Err(e) if start.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot bind 127.0.0.1:{port}: {e}"),
        }
    }
}

fn spawn_acceptor(listener: TcpListener, shared: Arc<Shared>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if shared.lock().stopped {
                return;
            }
            let Ok(stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
            let bytes_in = Arc::new(AtomicU64::new(0));
            let bytes_out = Arc::new(AtomicU64::new(0));
            let reader = match stream.try_clone() {
                Ok(r) => r,
                Err(_) => continue,
            };
            shared.lock().conns.push(Conn {
                id,
                stream,
                bytes_in: bytes_in.clone(),
                bytes_out,
            });
            let sh = shared.clone();
            std::thread::spawn(move || read_loop(sh, id, reader, bytes_in));
        }
    })
}

fn write_to(shared: &Shared, conn: u64, bytes: &[u8]) {
    let st = shared.lock();
    if let Some(c) = st.conns.iter().find(|c| c.id == conn) {
        let _ = (&c.stream).write_all(bytes);
        c.bytes_out.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
}

fn read_loop(shared: Arc<Shared>, id: u64, mut stream: TcpStream, bytes_in: Arc<AtomicU64>) {
    let mut framer = Framer::new(FramerLimits::default());
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        let at = Instant::now();
        if n == 0 {
            let mut st = shared.lock();
            st.log.push(Received {
                at,
                conn: id,
                what: Rx::Closed,
            });
            st.conns.retain(|c| c.id != id);
            if st.registered == Some(id) {
                st.registered = None;
            }
            shared.changed.notify_all();
            return;
        }
        bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        framer.push(&buf[..n], at);
        while let Some(frame) = framer.poll() {
            let what = match frame {
                Ok(Frame::Ping) => Rx::Ping,
                Ok(Frame::Pong) => Rx::Pong,
                Ok(Frame::Message(bytes)) => match Message::parse(&bytes) {
                    Ok(Message::Request(r)) => Rx::Request(r),
                    Ok(Message::Response(r)) => Rx::Response(r),
                    Err(e) => panic!("registrar: unparsable message from the UA: {e}"),
                },
                Err(e) => panic!("registrar: framing error from the UA: {e}"),
            };
            handle(&shared, id, &what);
            let mut st = shared.lock();
            st.log.push(Received { at, conn: id, what });
            shared.changed.notify_all();
        }
    }
}

/// The automatic answers.
fn handle(shared: &Shared, conn: u64, what: &Rx) {
    match what {
        Rx::Ping if !shared.lock().pongs_off => write_to(shared, conn, b"\r\n"),
        Rx::Request(req) if req.method == Method::Register && take_drop(shared) => {
            close_conn(shared, conn)
        }
        Rx::Request(req) if req.method == Method::Register => {
            let mut ok = Response::for_request(req, 200);
            let expires = req.headers.expires().unwrap_or(600);
            let contact = req.headers.get(&HeaderName::Contact).map(str::to_string);
            if let Some(c) = &contact {
                let echoed = match c.contains(";expires=") {
                    true => c.clone(),
                    false => format!("{c};expires={expires}"),
                };
                ok.headers.push(HeaderName::Contact, echoed);
            }
            ok.headers.push(HeaderName::Require, "outbound");
            if let Some(to) = ok.headers.get(&HeaderName::To).map(str::to_string) {
                if !to.contains(";tag=") {
                    ok.headers.set(HeaderName::To, format!("{to};tag=reg"));
                }
            }
            {
                let mut st = shared.lock();
                if expires > 0 {
                    st.registered = Some(conn);
                    st.contact = contact.as_deref().map(contact_uri);
                }
                // Recorded before the write, so that it is there when the UA sees the 200.
                st.register_ok_at.push((conn, Instant::now()));
            }
            write_to(shared, conn, &ok.to_bytes());
            if shared.lock().close_after_ok {
                close_conn(shared, conn);
            }
        }
        Rx::Request(req) if req.method == Method::Ack => {}
        Rx::Request(req) => write_to(shared, conn, &Response::for_request(req, 200).to_bytes()),
        _ => {}
    }
}

/// Closes a connection abruptly (both directions) and forgets its binding.
fn close_conn(shared: &Shared, conn: u64) {
    let mut st = shared.lock();
    if let Some(c) = st.conns.iter().find(|c| c.id == conn) {
        let _ = c.stream.shutdown(Shutdown::Both);
    }
    st.conns.retain(|c| c.id != conn);
    if st.registered == Some(conn) {
        st.registered = None;
    }
}

/// True (and one fewer left) when the next REGISTER is to be dropped.
fn take_drop(shared: &Shared) -> bool {
    let mut st = shared.lock();
    match st.drop_registers {
        0 => false,
        n => {
            st.drop_registers = n - 1;
            true
        }
    }
}

/// The URI inside `<...>` of a Contact value (or up to the first `;`).
fn contact_uri(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_string(),
        _ => value.split(';').next().unwrap_or(value).trim().to_string(),
    }
}

/// A header parameter of a Contact element (after the `>`), unquoted.
pub fn contact_param(value: &str, name: &str) -> Option<String> {
    // The first `>` closes the URI; a `+sip.instance` value holds `<...>` of its own.
    let params = value.split_once('>').map(|(_, p)| p).unwrap_or(value);
    params.split(';').find_map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        n.trim().eq_ignore_ascii_case(name).then(|| {
            v.trim()
                .trim_matches('"')
                .trim_matches(['<', '>'])
                .to_string()
        })
    })
}
