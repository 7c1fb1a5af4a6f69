//! Answers from the name table, and the small replies the server makes itself (errors, truncation).

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use rand::seq::SliceRandom;

use super::table::NameResolver;

/// The TTL of the records of containers, as Docker's.
pub const CONTAINER_TTL: u32 = 600;

/// The payload size announced in the OPT record of our own replies to EDNS queries.
const EDNS_PAYLOAD: u16 = 1232;

/// The reply from the name table, or `None` when the query is to be forwarded.
///
/// - A: the addresses of a known name, in random order (a poor man's load balancing, as Docker's);
/// - AAAA of a known name: an empty NOERROR reply (our networks have no IPv6);
/// - PTR of a container's address: `name.network`.
pub fn local_answer(request: &Message, resolver: &dyn NameResolver, requester: &str) -> Option<Message> {
    let query = request.queries.first()?;
    if query.query_class() != DNSClass::IN {
        return None;
    }
    let name = query.name().to_ascii();
    let answers: Vec<Record> = match query.query_type() {
        RecordType::A => {
            let mut ips = resolver.lookup_name(requester, &name)?;
            ips.shuffle(&mut rand::rng());
            ips.into_iter()
                .map(|ip| Record::from_rdata(query.name().clone(), CONTAINER_TTL, RData::A(A(ip))))
                .collect()
        }
        RecordType::AAAA => {
            resolver.lookup_name(requester, &name)?;
            Vec::new()
        }
        RecordType::PTR => {
            let ip = arpa_to_ipv4(query.name())?;
            let target = resolver.lookup_ip(requester, ip)?;
            let target = Name::from_ascii(format!("{target}.")).ok()?;
            vec![Record::from_rdata(
                query.name().clone(),
                CONTAINER_TTL,
                RData::PTR(PTR(target)),
            )]
        }
        _ => return None,
    };
    let mut reply = reply_to(request, ResponseCode::NoError);
    reply.add_answers(answers);
    Some(reply)
}

/// An empty reply to `request` with `code`: same ID and question, RD copied, RA set, and an OPT record
/// if the request had one.
pub fn reply_to(request: &Message, code: ResponseCode) -> Message {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.recursion_available = true;
    metadata.response_code = code;
    let mut reply = Message::response(request.id, request.op_code);
    reply.metadata = metadata;
    reply.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        reply.set_edns(edns);
    }
    reply
}

/// A reply for a request that could not even be parsed: FORMERR with its ID, if it has a header.
pub fn format_error(raw_request: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(raw_request)).ok()?;
    if header.metadata.message_type != MessageType::Query {
        return None; // never answer a response: two servers could bounce errors forever
    }
    Message::error_msg(header.metadata.id, OpCode::Query, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

/// The truncated form of a reply that is too large for the client's UDP buffer: header and question
/// only, TC set, so the client asks again over TCP.
pub fn truncated(request: &Message, reply: &[u8]) -> Vec<u8> {
    let code = Message::from_vec(reply)
        .map(|m| m.metadata.response_code)
        .unwrap_or(ResponseCode::NoError);
    let mut message = reply_to(request, code);
    message.metadata.truncation = true;
    message.to_vec().unwrap_or_default()
}

/// `4.3.2.1.in-addr.arpa.` → 1.2.3.4 (only full IPv4 addresses).
fn arpa_to_ipv4(name: &Name) -> Option<Ipv4Addr> {
    let mut name = name.clone();
    name.set_fqdn(true);
    let net = name.parse_arpa_name().ok()?;
    match (net.addr(), net.prefix_len()) {
        (IpAddr::V4(ip), 32) => Some(ip),
        _ => None,
    }
}
