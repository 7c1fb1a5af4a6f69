//! Name lookups in the table, without sockets.

use std::net::Ipv4Addr;

use crate::dns::{NameResolver, NameTable};

fn table() -> NameTable {
    let table = NameTable::new();
    table.add_endpoint("front", "c1", Ipv4Addr::new(10, 1, 0, 2), &["app".into()]);
    table.add_endpoint(
        "front",
        "c2",
        Ipv4Addr::new(10, 1, 0, 3),
        &["Web".into(), "www".into()],
    );
    table.add_endpoint("back.end", "c1", Ipv4Addr::new(10, 2, 0, 2), &["app".into()]);
    table.add_endpoint(
        "back.end",
        "c3",
        Ipv4Addr::new(10, 2, 0, 3),
        &["db".into(), "www".into()],
    );
    table.add_endpoint("elsewhere", "c4", Ipv4Addr::new(10, 3, 0, 4), &["secret".into()]);
    table
}

#[test]
fn names_resolve_only_on_the_requesters_networks() {
    let t = table();
    assert_eq!(t.lookup_name("c1", "web"), Some(vec![Ipv4Addr::new(10, 1, 0, 3)]));
    assert_eq!(t.lookup_name("c1", "DB."), Some(vec![Ipv4Addr::new(10, 2, 0, 3)]));
    assert_eq!(t.lookup_name("c1", "secret"), None);
    // c2 is not on back.end.
    assert_eq!(t.lookup_name("c2", "db"), None);
    // An unknown requester sees nothing.
    assert_eq!(t.lookup_name("nobody", "web"), None);
}

#[test]
fn name_dot_network_picks_that_network() {
    let t = table();
    // `www` is on both networks: the plain name answers from the first one, `www.<net>` from that one.
    assert_eq!(t.lookup_name("c1", "www"), Some(vec![Ipv4Addr::new(10, 2, 0, 3)]));
    assert_eq!(
        t.lookup_name("c1", "www.front"),
        Some(vec![Ipv4Addr::new(10, 1, 0, 3)])
    );
    assert_eq!(
        t.lookup_name("c1", "WWW.Back.End."),
        Some(vec![Ipv4Addr::new(10, 2, 0, 3)])
    );
    assert_eq!(t.lookup_name("c1", "db.front"), None);
    assert_eq!(t.lookup_name("c1", "secret.elsewhere"), None);
}

#[test]
fn ptr_names_are_name_dot_network() {
    let t = table();
    assert_eq!(
        t.lookup_ip("c1", Ipv4Addr::new(10, 1, 0, 3)).as_deref(),
        Some("web.front")
    );
    assert_eq!(
        t.lookup_ip("c1", Ipv4Addr::new(10, 2, 0, 3)).as_deref(),
        Some("db.back.end")
    );
    assert_eq!(t.lookup_ip("c1", Ipv4Addr::new(10, 3, 0, 4)), None);
}

#[test]
fn removing_a_container_removes_all_its_names() {
    let t = table();
    t.remove_container("c3");
    assert_eq!(t.lookup_name("c1", "db"), None);
    assert_eq!(t.lookup_name("c1", "www"), Some(vec![Ipv4Addr::new(10, 1, 0, 3)]));
    assert!(t.entry("back.end", "c1").is_some());
    assert!(!t.remove_endpoint("back.end", "c3"));
}
