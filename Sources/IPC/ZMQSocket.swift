import ChatWire
import IPCMessages
import CZeroMQ
import Foundation
import Synchronization

/// A ZeroMQ context. Contexts are thread-safe; one per process is enough.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    /// CURVE keys and admissions for the `tcp://` endpoints of this
    /// context's sockets; nil: `tcp://` is plain (no program runs so).
    public let security: PlaneSecurity?
    /// Whether this context's ZAP handler is bound (its reactor binds it
    /// when `security` serves any endpoint); CURVE servers refuse to bind
    /// before, as libzmq would admit every key.
    let zapBound = Atomic<Bool>(false)

    public init(security: PlaneSecurity? = nil) {
        guard let handle = zmq_ctx_new() else { fatalError("zmq_ctx_new failed: out of memory") }
        self.handle = handle
        self.security = security
    }

    deinit { zmq_ctx_term(handle) }
}

extension ChatError.Code {
    /// A ZeroMQ call failed.
    public static let zmq = ChatError.Code("zmq")
}

extension ChatError {
    /// A ZeroMQ call failed: the call, and ZeroMQ's words for why (`errno`).
    static func zmq(_ operation: String, errno code: Int32 = zmq_errno()) -> ChatError {
        ChatError(.zmq, "\(operation): \(String(cString: zmq_strerror(code)))")
    }
}

/// One ZeroMQ socket. Not thread-safe (ZeroMQ sockets are not): it is
/// created, used and closed on its reactor's thread, or handed to that
/// thread before the thread starts.
final class ZMQSocket {
    let handle: UnsafeMutableRawPointer
    private let context: ZMQContext
    private var security: PlaneSecurity? { context.security }
    private var closed = false

    init(context: ZMQContext, type: Int32) throws {
        guard let handle = zmq_socket(context.handle, type) else { throw ChatError.zmq("zmq_socket") }
        self.handle = handle
        self.context = context
    }

    deinit { close() }

    /// The connecting side of a conversation with servers of one kind,
    /// made one way for every client: messages go only to a server that is
    /// connected (ZMQ_IMMEDIATE), round-robin over several, and a lost
    /// connection is retried from 100 ms, backing off to 2 s. `linger`:
    /// how long messages still queued may hold up closing it (none for
    /// requests nobody will wait for; a little for results a server
    /// should still get).
    static func dealer(context: ZMQContext, connectingTo endpoints: [String], linger: Duration, routingId: String? = nil) throws -> ZMQSocket {
        let socket = try ZMQSocket(context: context, type: ZMQ_DEALER)
        try socket.set(ZMQ_LINGER, Int32(linger.components.seconds * 1000 + linger.components.attoseconds / 1_000_000_000_000_000))
        try socket.set(ZMQ_IMMEDIATE, 1)
        try socket.set(ZMQ_RECONNECT_IVL, 100)
        try socket.set(ZMQ_RECONNECT_IVL_MAX, 2000)
        if let routingId { try socket.set(ZMQ_ROUTING_ID, bytes: Array(routingId.utf8)) }
        for endpoint in endpoints { try socket.connect(endpoint) }
        return socket
    }

    /// A socket of `type` bound to `endpoint`, as every bound socket of the
    /// plane is made: unsent messages kept 200 ms at close, and queues of
    /// `highWaterMark` messages each way when given (ZeroMQ's 1,000 otherwise).
    static func bound(context: ZMQContext, type: Int32, to endpoint: String, highWaterMark: Int32? = nil) throws -> ZMQSocket {
        let socket = try ZMQSocket(context: context, type: type)
        try socket.set(ZMQ_LINGER, 200)
        if let highWaterMark {
            try socket.set(ZMQ_SNDHWM, highWaterMark)
            try socket.set(ZMQ_RCVHWM, highWaterMark)
        }
        try socket.bind(endpoint)
        return socket
    }

    func set(_ option: Int32, _ value: Int32) throws {
        var value = value
        guard zmq_setsockopt(handle, option, &value, MemoryLayout<Int32>.size) == 0 else {
            throw ChatError.zmq("zmq_setsockopt(\(option))")
        }
    }

    func set(_ option: Int32, bytes: [UInt8]) throws {
        let rc = bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        guard rc == 0 else { throw ChatError.zmq("zmq_setsockopt(\(option))") }
    }

    func bind(_ endpoint: String) throws {
        try Endpoint.validate(endpoint)
        if endpoint.hasPrefix("tcp://"), let security {
            guard let server = security.servers[endpoint] else {
                throw ChatError.configuration("\(endpoint): no role is admitted on this tcp:// endpoint")
            }
            guard context.zapBound.load(ordering: .acquiring) else {
                throw ChatError.configuration("\(endpoint): CURVE needs the context's ZAP handler, which is not bound")
            }
            try set(ZMQ_CURVE_SERVER, 1)
            try set(ZMQ_CURVE_SECRETKEY, bytes: security.keys.secretKey)
            try set(ZMQ_ZAP_DOMAIN, bytes: Array(server.domain.utf8))
        }
        guard zmq_bind(handle, endpoint) == 0 else {
            throw ChatError.zmq("bind \(endpoint)", errno: zmq_errno())
        }
    }

    func connect(_ endpoint: String) throws {
        try Endpoint.validate(endpoint)
        if endpoint.hasPrefix("tcp://"), let security {
            guard let serverKey = security.clients[endpoint] else {
                throw ChatError.configuration("\(endpoint): no server key is known for this tcp:// endpoint")
            }
            try set(ZMQ_CURVE_SERVERKEY, bytes: serverKey)
            try set(ZMQ_CURVE_PUBLICKEY, bytes: security.keys.publicKey)
            try set(ZMQ_CURVE_SECRETKEY, bytes: security.keys.secretKey)
        }
        guard zmq_connect(handle, endpoint) == 0 else {
            throw ChatError.zmq("connect \(endpoint)", errno: zmq_errno())
        }
    }

    enum SendResult {
        case sent
        /// The socket cannot take the message now (no peer, or its queue is full).
        case wouldBlock
        case failed(ChatError)
    }

    /// Sends one multipart message without blocking. Either every frame is
    /// queued or none is: ZeroMQ refuses a first frame it cannot take and
    /// then accepts the rest of the message.
    func send(_ frames: [[UInt8]]) -> SendResult {
        for (i, frame) in frames.enumerated() {
            let flags = ZMQ_DONTWAIT | (i < frames.count - 1 ? ZMQ_SNDMORE : 0)
            while true {
                let rc = frame.withUnsafeBytes { zmq_send(handle, $0.baseAddress, $0.count, flags) }
                if rc >= 0 { break }
                let code = zmq_errno()
                if code == EINTR { continue }
                if code == EAGAIN && i == 0 { return .wouldBlock }
                return .failed(ChatError.zmq("zmq_send", errno: code))
            }
        }
        return .sent
    }

    /// Receives one whole multipart message if one is waiting; nil if none is.
    func receive() throws -> [[UInt8]]? {
        var frames: [[UInt8]] = []
        while true {
            var message = zmq_msg_t()
            zmq_msg_init(&message)
            defer { zmq_msg_close(&message) }
            let flags = frames.isEmpty ? ZMQ_DONTWAIT : 0
            let rc = zmq_msg_recv(&message, handle, flags)
            if rc < 0 {
                let code = zmq_errno()
                if code == EINTR { continue }
                if code == EAGAIN && frames.isEmpty { return nil }
                throw ChatError.zmq("zmq_msg_recv", errno: code)
            }
            let count = zmq_msg_size(&message)
            if count == 0 {
                frames.append([])
            } else {
                let bytes = UnsafeRawBufferPointer(start: zmq_msg_data(&message), count: count)
                frames.append([UInt8](bytes))
            }
            if zmq_msg_more(&message) == 0 { return frames }
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        zmq_close(handle)
    }
}

/// ZeroMQ endpoint strings.
public enum Endpoint {
    /// A Unix socket path holds at most 107 bytes plus its terminator.
    public static let maximumIPCPathBytes = 107

    /// Checks what ZeroMQ would reject with a less helpful message.
    public static func validate(_ endpoint: String) throws {
        if endpoint.hasPrefix("ipc://") {
            let path = endpoint.dropFirst("ipc://".count)
            guard !path.isEmpty, path.utf8.count <= maximumIPCPathBytes else {
                throw ChatError.configuration(
                    "\(endpoint): an ipc:// path must be 1 to \(maximumIPCPathBytes) bytes long (it has \(path.utf8.count)); use a shorter RUN_DIR"
                )
            }
        } else if !endpoint.hasPrefix("tcp://") && !endpoint.hasPrefix("inproc://") {
            throw ChatError.configuration("\(endpoint): an endpoint starts with ipc://, tcp:// or inproc://")
        }
    }

    /// The endpoints of a comma-separated list (several stores), each checked.
    public static func list(_ text: String) throws -> [String] {
        let endpoints = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !endpoints.isEmpty else { throw ChatError.configuration("an empty endpoint list") }
        for endpoint in endpoints { try validate(endpoint) }
        return endpoints
    }

    /// The directory of an `ipc://` endpoint's socket file, if it has one.
    public static func ipcDirectory(_ endpoint: String) -> String? {
        guard endpoint.hasPrefix("ipc://") else { return nil }
        let path = String(endpoint.dropFirst("ipc://".count))
        return (path as NSString).deletingLastPathComponent
    }
}
