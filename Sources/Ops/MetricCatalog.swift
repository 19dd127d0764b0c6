/// What each metric means, served as its `# HELP` line. Every family a
/// program exposes has an entry here (a test runs `promtool check metrics`
/// on each program's `/metrics`); the README's table says the same at more
/// length.
public enum MetricCatalog {
    public static let help: [String: String] = [
        // udpchat-edge
        "udpchat_edge_datagrams_received_total": "UDP datagrams the edge received.",
        "udpchat_edge_datagrams_sent_total": "UDP datagrams the edge sent.",
        "udpchat_edge_handshakes_total":
            "SESSION_INIT handshakes by result: ok, failed, or over_budget (dropped by the per-source limit).",
        "udpchat_edge_decrypt_failures_total": "SECURE_MSG packets whose AES-GCM tag did not verify.",
        "udpchat_edge_replays_rejected_total": "Packets refused by the replay window.",
        "udpchat_edge_reflections_dropped_total": "Packets that looked like the server's own replies, dropped unanswered.",
        "udpchat_edge_error_replies_suppressed_total": "Error replies not sent because a source exceeded its reply budget.",
        "udpchat_edge_datagrams_shed_total":
            "Datagrams of no known session (handshakes, mostly) dropped unread because as many as the edge queues were waiting (a flood).",
        "udpchat_edge_retransmissions_total": "Broadcast copies sent again for want of an ACK.",
        "udpchat_edge_sessions_unreachable_total": "Sessions given up on after their copies went unacknowledged.",
        "udpchat_edge_ack_round_trip_seconds": "First transmission of a broadcast copy to its ACK, retransmissions included.",
        "udpchat_edge_unacknowledged_copies": "Broadcast copies on their way now, waiting for an ACK.",
        "udpchat_edge_backlog_skipped_total": "Room events skipped by sessions that fell further behind than the backlog bound.",
        "udpchat_edge_events_read_total": "Room events read back from the store (restarts, missed events, sessions behind).",
        "udpchat_edge_resynchronisations_total": "Times the edge read sessions and rooms from the store after missing events or starting.",
        "udpchat_edge_sessions": "Sessions the edge holds in memory.",
        // calls between programs, as the caller saw them
        "udpchat_rpc_seconds": "Calls to another program by peer and method, answered or not.",
        "udpchat_rpc_errors_total": "Calls to another program that failed, by peer, method and error code.",
        // udpchat-store
        "udpchat_store_request_seconds": "Time the store took to answer a request, commit included, by method.",
        "udpchat_store_batch_size": "Writes per group commit.",
        "udpchat_store_messages_stored_total": "Chat messages committed.",
        "udpchat_store_requests_expired_total": "Writes dropped unstarted because the edge had already given up on them.",
        "udpchat_store_ai_jobs_total": "AI jobs by transition: queued, leased, completed, failed.",
        "udpchat_store_ai_jobs_open": "AI jobs queued or leased now.",
        "udpchat_store_ai_workers": "AI workers connected now.",
        "udpchat_store_ai_job_seconds": "AI jobs from queued to finished, by outcome.",
        // udpchat-ai
        "udpchat_ai_jobs_total": "Jobs this worker ran, by outcome: reply, failed, handed_back.",
        "udpchat_ai_job_seconds": "Time this worker spent on a job, by outcome.",
        // udpchat-keys
        "udpchat_keys_signatures_total": "Handshakes signed with the identity key.",
        "udpchat_keys_busy_total": "Handshakes answered busy: the signing threads had as many waiting as they take.",
        "udpchat_keys_unwraps_total": "Session keys unwrapped for a restarted edge, by result.",
        // udpchat-web
        "udpchat_web_connections": "WebSockets open now, each with its UDP socket.",
        "udpchat_web_connections_total": "WebSocket upgrades by result: accepted, over_limit (closed at once), origin_refused.",
        "udpchat_web_frames_total": "Frames relayed, by direction: to_edge (one datagram each) or to_browser.",
        "udpchat_web_stray_datagrams_total": "Datagrams from anyone but the edge, dropped unrelayed.",
        "udpchat_web_unread_datagrams_total":
            "Datagrams from the edge dropped because the browser was not reading its WebSocket (the edge sends broadcasts again).",
        "udpchat_web_closed_total": "WebSockets the bridge closed, by reason: flood, oversize, not_json, idle.",
    ]
}
