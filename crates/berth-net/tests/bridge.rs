//! Bridges on the real kernel (root only).

mod common;

use berth_net::{Bridge, Ipv4Net};
use common::{link_exists, ok, uniq, LinkGuard};

#[tokio::test]
async fn bridge_create_adopt_delete() {
    let name = uniq("br");
    let _guard = LinkGuard(name.clone());
    let subnet: Ipv4Net = "10.201.1.0/24".parse().unwrap();

    let bridge = Bridge::ensure(&name, subnet.gateway(), subnet).await.unwrap();
    assert_eq!(bridge.name, name);
    let details = ok(&["ip", "-d", "addr", "show", &name]);
    assert!(details.contains("bridge"), "{details}");
    assert!(details.contains("inet 10.201.1.1/24"), "{details}");
    assert!(details.contains(",UP"), "{details}");

    // Adopting the existing bridge keeps it and its address (no duplicate).
    let again = Bridge::ensure(&name, subnet.gateway(), subnet).await.unwrap();
    assert_eq!(again, bridge);
    assert_eq!(
        ok(&["ip", "addr", "show", &name])
            .matches("inet 10.201.1.1/24")
            .count(),
        1
    );
    assert_eq!(Bridge::get(&name).await.unwrap(), Some(bridge));

    assert!(Bridge::delete(&name).await.unwrap());
    assert!(!link_exists(&name));
    assert!(!ok(&["ip", "link", "show"]).contains(&name));
    assert!(
        !Bridge::delete(&name).await.unwrap(),
        "deleting twice is not an error"
    );
    assert_eq!(Bridge::get(&name).await.unwrap(), None);
}
