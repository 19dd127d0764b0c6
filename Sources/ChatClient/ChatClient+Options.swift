import ChatWire

extension ChatClient {
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        /// Where fingerprints are pinned; nil disables pinning (tests).
        public var knownHosts: KnownHosts?
        /// The client key's size; the web client uses 1024 or 2048.
        public var keyBits: Int
        public var timeout: Duration
        /// A request not answered within this is sent again, as the very same
        /// datagram: the server answers a repeat with the same reply and does
        /// not carry the request out twice. nil: never.
        public var retryInterval: Duration?
        /// Acknowledge broadcasts (the web client does; scripts need not).
        public var acknowledge: Bool
        /// Keep every datagram received, for tests that replay or reflect them.
        public var recordDatagrams: Bool
        /// The local address to send from (default: any).
        public var bindHost: String?
        /// The server sets the top bit of every nonce it makes (udpchat
        /// does, docs/protocol.md §3.3; the original server draws them at
        /// random): a packet without it is the client's own, reflected, and
        /// is dropped. Off for a server that does not set it.
        public var serverNoncesMarked = true

        public init(
            host: String, port: Int, knownHosts: KnownHosts? = KnownHosts(path: KnownHosts.defaultPath), keyBits: Int = 2048,
            timeout: Duration = .seconds(5), retryInterval: Duration? = .seconds(1), acknowledge: Bool = true,
            recordDatagrams: Bool = false, bindHost: String? = nil
        ) {
            self.host = host
            self.port = port
            self.knownHosts = knownHosts
            self.keyBits = keyBits
            self.timeout = timeout
            self.retryInterval = retryInterval
            self.acknowledge = acknowledge
            self.recordDatagrams = recordDatagrams
            self.bindHost = bindHost
        }

        /// `host:port` as pinned in known_hosts.
        public var serverName: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }
}
