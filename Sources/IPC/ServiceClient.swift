import ChatWire
import IPCMessages
import Logging
import Metrics
import SwiftProtobuf

/// Typed calls to a service: protocol-buffer requests in, responses out,
/// over an ``RPCClient``.
public struct ServiceClient<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: Sendable {
    public let rpc: RPCClient
    public let timeout: Duration

    public init(rpc: RPCClient, timeout: Duration) {
        self.rpc = rpc
        self.timeout = timeout
    }

    /// Calls the service; `completion` runs once on the reactor thread.
    /// Latency and errors are recorded per method (`udpchat_rpc_*`).
    public func call(_ request: Request, completion: @escaping @Sendable (Result<Response, RPCError>) -> Void) {
        let method = (request as? any RPCMethodNamed)?.methodName ?? Request.protoMessageName
        let peer = rpc.peerName
        let started = MonotonicClock.now()
        let completion: @Sendable (Result<Response, RPCError>) -> Void = { result in
            let dimensions = [("peer", peer), ("method", method)]
            Timer(label: "udpchat_rpc_seconds", dimensions: dimensions).recordNanoseconds(Int64(MonotonicClock.now() &- started))
            if case .failure(let error) = result {
                Counter(label: "udpchat_rpc_errors_total", dimensions: dimensions + [("code", error.code.name)]).increment()
            }
            completion(result)
        }
        let body: [UInt8]
        do {
            body = try request.serializedBytes()
        } catch {
            completion(.failure(RPCError(.malformed, "cannot encode \(Request.protoMessageName): \(error)")))
            return
        }
        rpc.call(body, timeout: timeout) { result in
            completion(
                result.flatMap { bytes in
                    do {
                        return .success(try Response(serializedBytes: bytes))
                    } catch {
                        return .failure(RPCError(.malformed, "cannot decode \(Response.protoMessageName): \(error)"))
                    }
                })
        }
    }

    /// Calls the service and waits for the response.
    public func call(_ request: Request) async throws(RPCError) -> Response {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Response, RPCError>, Never>) in
            call(request) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }
}

public typealias KeysClient = ServiceClient<IPCKeysRequest, IPCKeysResponse>
public typealias StoreClient = ServiceClient<IPCStoreRequest, IPCStoreResponse>

extension RPCServer {
    /// Serves typed requests: the body is decoded as `Request`, handed to
    /// `handler`, and its response encoded back.
    public convenience init<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        reactor: ZMQReactor, endpoint: String, logger: Logger, requestType: Request.Type,
        handler: @escaping @Sendable (Request) async -> Response
    ) throws {
        try self.init(reactor: reactor, endpoint: endpoint, logger: logger) { bytes in
            let request = try Request(serializedBytes: bytes)
            return try await handler(request).serializedBytes()
        }
    }
}
