import ChatWire
import Foundation
import IPC
import IPCMessages
import Logging
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1)))
struct RPCTests {
    static func endpoint() -> String {
        "ipc:///tmp/udpchat-rpc-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    }

    /// A server on its own reactor; stop it with `shutdown()`.
    static func server(_ endpoint: String, handler: @escaping RPCServer.Handler) throws -> ZMQReactor {
        let reactor = ZMQReactor(context: ZMQContext(), name: "test-server")
        _ = try RPCServer(reactor: reactor, endpoint: endpoint, logger: Logger(label: "test"), handler: handler)
        reactor.start()
        return reactor
    }

    static func client(_ endpoint: String) throws -> (RPCClient, ZMQReactor) {
        let reactor = ZMQReactor(context: ZMQContext(), name: "test-client")
        let client = try RPCClient(reactor: reactor, endpoint: endpoint, name: "server", logger: Logger(label: "test"))
        reactor.start()
        return (client, reactor)
    }

    @Test func callsReachTheServerAndComeBack() async throws {
        let endpoint = Self.endpoint()
        let server = try Self.server(endpoint) { body in body.reversed() }
        defer { server.shutdown() }
        let (client, reactor) = try Self.client(endpoint)
        defer { reactor.shutdown() }
        #expect(try await client.call([1, 2, 3], timeout: .seconds(5)) == [3, 2, 1])
    }

    /// Replies come back out of order (slow requests do not hold up fast
    /// ones) and each reaches its own caller.
    @Test func manyCallsInFlightEachGetTheirOwnReply() async throws {
        let endpoint = Self.endpoint()
        let server = try Self.server(endpoint) { body in
            // The first byte says how long to take: later calls finish first.
            try await Task.sleep(for: .milliseconds(Int(body[0]) * 2))
            return body
        }
        defer { server.shutdown() }
        let (client, reactor) = try Self.client(endpoint)
        defer { reactor.shutdown() }
        let results = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            for i in 0..<1000 {
                group.addTask {
                    let body: [UInt8] = [UInt8(100 - i % 100), UInt8(i & 0xff), UInt8(i >> 8)]
                    return (i, try await client.call(body, timeout: .seconds(20)))
                }
            }
            return try await group.reduce(into: [Int: [UInt8]]()) { $0[$1.0] = $1.1 }
        }
        #expect(results.count == 1000)
        for (i, reply) in results { #expect(reply == [UInt8(100 - i % 100), UInt8(i & 0xff), UInt8(i >> 8)]) }
    }

    /// The call ends with a timeout error (its own deadline), not a hang; no
    /// wall time is asserted, since on a busy machine that measures the
    /// machine (the test's time limit catches a hang).
    @Test(.timeLimit(.minutes(1))) func aCallToNobodyTimesOutAtItsDeadline() async throws {
        let (client, reactor) = try Self.client(Self.endpoint())
        defer { reactor.shutdown() }
        await #expect {
            try await client.call([1], timeout: .milliseconds(300))
        } throws: { ($0 as? RPCError)?.code == .timeout }
    }

    @Test func handlerFailuresComeBackAsRemoteErrors() async throws {
        struct Broken: Error, CustomStringConvertible { var description: String { "broken handler" } }
        let endpoint = Self.endpoint()
        let server = try Self.server(endpoint) { _ in throw Broken() }
        defer { server.shutdown() }
        let (client, reactor) = try Self.client(endpoint)
        defer { reactor.shutdown() }
        await #expect(throws: RPCError(.remote, "broken handler")) { try await client.call([1], timeout: .seconds(5)) }
    }

    /// Requests made while the server is down are sent when it comes up,
    /// if their deadline has not passed.
    @Test func callsWaitForAServerThatStartsLater() async throws {
        let endpoint = Self.endpoint()
        let (client, reactor) = try Self.client(endpoint)
        defer { reactor.shutdown() }
        async let reply = client.call([7], timeout: .seconds(10))
        // Part of the scenario, not a synchronisation: the server comes up later
        // (were the call not sent yet, the test would still pass, only test less).
        try await Task.sleep(for: .milliseconds(300))
        let server = try Self.server(endpoint) { $0 + [8] }
        defer { server.shutdown() }
        #expect(try await reply == [7, 8])
    }

    @Test func shutdownFailsPendingCalls() async throws {
        let (client, reactor) = try Self.client(Self.endpoint())
        let reply = Task { try await client.call([1], timeout: .seconds(30)) }
        // Part of the scenario, not a synchronisation: a call queued or
        // already sent fails the same way at shutdown, so timing only
        // decides which of the two the test covers.
        try await Task.sleep(for: .milliseconds(100))
        reactor.shutdown()
        let result = await reply.result
        #expect(throws: RPCError(.shutdown, "the process is shutting down")) { try result.get() }
    }

    @Test func publishedEventsReachSubscribersInOrder() async throws {
        let endpoint = Self.endpoint()
        let publisherReactor = ZMQReactor(context: ZMQContext(), name: "test-pub")
        let publisher = try Publisher(reactor: publisherReactor, endpoint: endpoint, logger: Logger(label: "test"))
        publisherReactor.start()
        defer { publisherReactor.shutdown() }
        let received = ReceivedEvents()
        let subscriberReactor = ZMQReactor(context: ZMQContext(), name: "test-sub")
        _ = try Subscriber(reactor: subscriberReactor, endpoint: endpoint, logger: Logger(label: "test")) { topic, body in
            received.append(topic, body)
        }
        subscriberReactor.start()
        defer { subscriberReactor.shutdown() }
        // PUB/SUB drops what is published before the subscription is connected: probe until one arrives.
        let deadline = ContinuousClock.now + .seconds(5)
        while received.count == 0 && ContinuousClock.now < deadline {
            publisher.publish(topic: "probe", body: [])
            try await Task.sleep(for: .milliseconds(20))
        }
        for i in 0..<500 { publisher.publish(topic: "event", body: [UInt8(i & 0xff), UInt8(i >> 8)]) }
        while received.events(topic: "event").count < 500 && ContinuousClock.now < deadline + .seconds(5) {
            try await Task.sleep(for: .milliseconds(20))
        }
        let expected: [[UInt8]] = (0..<500).map { i in [UInt8(i & 0xff), UInt8(i >> 8)] }
        #expect(received.events(topic: "event") == expected)
    }
}

final class ReceivedEvents: Sendable {
    private let events = Mutex<[(String, [UInt8])]>([])
    func append(_ topic: String, _ body: [UInt8]) { events.withLock { $0.append((topic, body)) } }
    var count: Int { events.withLock { $0.count } }
    func events(topic: String) -> [[UInt8]] { events.withLock { $0.filter { $0.0 == topic }.map(\.1) } }
}
