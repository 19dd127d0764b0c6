import Metrics

/// udpchat-web's instruments, made once (the README lists them).
struct WebMetrics: Sendable {
    let connections = Gauge(label: "udpchat_web_connections")
    let accepted = Counter(label: "udpchat_web_connections_total", dimensions: [("result", "accepted")])
    let overLimit = Counter(label: "udpchat_web_connections_total", dimensions: [("result", "over_limit")])
    let originRefused = Counter(label: "udpchat_web_connections_total", dimensions: [("result", "origin_refused")])
    let framesIn = Counter(label: "udpchat_web_frames_total", dimensions: [("direction", "to_edge")])
    let framesOut = Counter(label: "udpchat_web_frames_total", dimensions: [("direction", "to_browser")])
    let strayDatagrams = Counter(label: "udpchat_web_stray_datagrams_total")
    /// Datagrams for a browser that was not reading, dropped.
    let unread = Counter(label: "udpchat_web_unread_datagrams_total")

    /// WebSockets the bridge closed, by reason: flood, oversize, not_json, idle.
    func closed(_ reason: String) {
        Counter(label: "udpchat_web_closed_total", dimensions: [("reason", reason)]).increment()
    }
}
