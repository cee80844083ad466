//! Real-world-shaped SIP messages for tests and benchmarks (not part of the stable API).

/// An INVITE like a softphone sends over TCP: 944 bytes, SDP offer with Opus, PCMU and
/// telephone-event.
pub const INVITE: &[u8] = concat!(
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n",
    "Via: SIP/2.0/TCP 192.0.2.10:52044;branch=z9hG4bK74bf9a1c2e;rport\r\n",
    "Max-Forwards: 70\r\n",
    "Route: <sip:proxy.atlanta.example.com;transport=tcp;lr>\r\n",
    "Record-Route: <sip:edge.atlanta.example.com;transport=tcp;lr>\r\n",
    "From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n",
    "To: <sip:bob@biloxi.example.com>\r\n",
    "Call-ID: a84b4c76e66710@pc33.atlanta\r\n",
    "CSeq: 31862 INVITE\r\n",
    "Contact: <sip:alice@192.0.2.10:52044;transport=tcp;ob>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"\r\n",
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, NOTIFY\r\n",
    "Supported: replaces, outbound, gruu, 100rel, timer\r\n",
    "User-Agent: Linphone/5.2.4\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 216\r\n",
    "\r\n",
    "v=0\r\n",
    "o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n",
    "s=-\r\n",
    "c=IN IP4 192.0.2.10\r\n",
    "t=0 0\r\n",
    "m=audio 49170 RTP/AVP 111 0 101\r\n",
    "a=rtpmap:111 opus/48000/2\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=sendrecv\r\n",
).as_bytes();

/// An INVITE as sipp's built-in `uac` scenario sends it (bare addr-spec Contact, padded
/// Content-Length).
pub const SIPP_INVITE: &[u8] = concat!(
    "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n",
    "Via: SIP/2.0/TCP 127.0.0.1:5061;branch=z9hG4bK-4242-1-0\r\n",
    "From: sipp <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag001\r\n",
    "To: service <sip:service@127.0.0.1:5060>\r\n",
    "Call-ID: 1-4242@127.0.0.1\r\n",
    "CSeq: 1 INVITE\r\n",
    "Contact: sip:sipp@127.0.0.1:5061;transport=TCP\r\n",
    "Max-Forwards: 70\r\n",
    "Subject: Performance Test\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length:   129\r\n",
    "\r\n",
    "v=0\r\n",
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n",
    "s=-\r\n",
    "c=IN IP4 127.0.0.1\r\n",
    "t=0 0\r\n",
    "m=audio 6000 RTP/AVP 0\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
)
.as_bytes();

/// A 200 OK to [`INVITE`] relayed by a Kamailio proxy: double Record-Route, `received`/`rport`
/// on the Via.
pub const KAMAILIO_200_OK: &[u8] = concat!(
    "SIP/2.0 200 OK\r\n",
    "Via: SIP/2.0/TCP 192.0.2.10:52044;received=203.0.113.7;branch=z9hG4bK74bf9a1c2e;rport=61022;alias\r\n",
    "Record-Route: <sip:198.51.100.1;transport=tcp;r2=on;lr=on;ftag=9fxced76sl;did=7a1.b3c2>,<sip:198.51.100.1;r2=on;lr=on;ftag=9fxced76sl;did=7a1.b3c2>\r\n",
    "Record-Route: <sip:10.0.0.5;lr>\r\n",
    "From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n",
    "To: <sip:bob@biloxi.example.com>;tag=8321234356\r\n",
    "Call-ID: a84b4c76e66710@pc33.atlanta\r\n",
    "CSeq: 31862 INVITE\r\n",
    "Contact: <sip:bob@198.51.100.20:5060;transport=tcp>\r\n",
    "Server: kamailio (5.7.4 (x86_64/linux))\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 184\r\n",
    "\r\n",
    "v=0\r\n",
    "o=bob 2808844564 2808844564 IN IP4 198.51.100.20\r\n",
    "s=-\r\n",
    "c=IN IP4 198.51.100.20\r\n",
    "t=0 0\r\n",
    "m=audio 40000 RTP/AVP 111 101\r\n",
    "a=rtpmap:111 opus/48000/2\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
).as_bytes();
