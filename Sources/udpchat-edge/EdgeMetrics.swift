import Metrics

/// The edge's instruments, made once (the README lists them).
struct EdgeMetrics: Sendable {
    let datagramsIn = Counter(label: "udpchat_edge_datagrams_received_total")
    let datagramsOut = Counter(label: "udpchat_edge_datagrams_sent_total")
    let handshakesOK = Counter(label: "udpchat_edge_handshakes_total", dimensions: [("result", "ok")])
    let handshakesFailed = Counter(label: "udpchat_edge_handshakes_total", dimensions: [("result", "failed")])
    let handshakesDropped = Counter(label: "udpchat_edge_handshakes_total", dimensions: [("result", "over_budget")])
    let handshakesRefused = Counter(label: "udpchat_edge_handshakes_total", dimensions: [("result", "at_capacity")])
    /// Datagrams not of a known session dropped because too many waited (a flood).
    let datagramsShed = Counter(label: "udpchat_edge_datagrams_shed_total")
    let decryptFailures = Counter(label: "udpchat_edge_decrypt_failures_total")
    let replaysRejected = Counter(label: "udpchat_edge_replays_rejected_total")
    let reflectionsDropped = Counter(label: "udpchat_edge_reflections_dropped_total")
    let errorRepliesSuppressed = Counter(label: "udpchat_edge_error_replies_suppressed_total")
    let retransmissions = Counter(label: "udpchat_edge_retransmissions_total")
    let unreachable = Counter(label: "udpchat_edge_sessions_unreachable_total")
    let ackRoundTrip = Timer(label: "udpchat_edge_ack_round_trip_seconds")
    let unacknowledged = Gauge(label: "udpchat_edge_unacknowledged_copies")
    let sessions = Gauge(label: "udpchat_edge_sessions")
    let backlogSkipped = Counter(label: "udpchat_edge_backlog_skipped_total")
    let eventsRead = Counter(label: "udpchat_edge_events_read_total")
    let resynchronisations = Counter(label: "udpchat_edge_resynchronisations_total")
}
