//! The NATS JetStream cluster harness (`nodb_tests::nats`) itself: it
//! starts three real `nats-server` nodes that agree on a meta leader,
//! elects another when that leader is killed, and takes the killed node
//! back after a restart.

use std::time::Duration;

use nodb_tests::nats::NatsCluster;

#[test]
fn killed_meta_leader_is_replaced_and_rejoins_after_restart() {
    let mut cluster = NatsCluster::start();
    assert_eq!(cluster.urls().split(',').count(), 3);
    let leader = cluster.meta_leader().expect("a meta leader once started");
    for i in 0..3 {
        assert_eq!(cluster.meta_leader_seen_by(i), Some(leader), "n{i}'s meta leader\n{}", cluster.logs());
    }

    cluster.kill(leader);
    assert!(!cluster.is_running(leader));
    let next = cluster.wait_until("another meta leader", Duration::from_secs(20), |c| c.meta_leader());
    assert_ne!(next, leader);

    cluster.restart(leader);
    assert!(cluster.is_running(leader));
    cluster.wait_until("the restarted node naming the meta leader", Duration::from_secs(20), |c| {
        let now = c.meta_leader()?;
        (c.meta_leader_seen_by(leader) == Some(now)).then_some(())
    });
}
