import Common
import Foundation
import Logging
import Testing

@Suite struct RPCTests {
    static func endpoint() -> String {
        "ipc:///tmp/udpchat-rpc-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    }

    @Test func callsReachTheServerAndComeBack() async throws {
        let context = ZMQContext()
        let endpoint = Self.endpoint()
        let serverReactor = ZMQReactor(context: context, name: "test-server")
        _ = try RPCServer(reactor: serverReactor, endpoint: endpoint, logger: Logger(label: "test")) { body in
            body.reversed()
        }
        serverReactor.start()
        defer { serverReactor.shutdown() }
        let clientReactor = ZMQReactor(context: context, name: "test-client")
        let client = try RPCClient(reactor: clientReactor, endpoint: endpoint, name: "server", logger: Logger(label: "test"))
        clientReactor.start()
        defer { clientReactor.shutdown() }
        let reply = try await client.call([1, 2, 3], timeout: .seconds(5))
        #expect(reply == [3, 2, 1])
    }
}
