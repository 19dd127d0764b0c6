import ChatWire
import Foundation
import IPCMessages
import Testing

@testable import udpchat_edge

/// The edge's limits: sessions per source (IPv6 by /64), sessions in all,
/// memory, sessions never logged in.
extension EdgeMachineTests {
    /// A client's SESSION_INIT (the key is never parsed here: keys does that).
    static let sessionInit = Envelope.sessionInitRequest(clientKey: Data(repeating: 7, count: 64).base64EncodedString()).encoded()

    /// Completes a handshake from `address` as keys would; returns the
    /// SERVER_ERROR text when the machine refused it instead.
    static func handshake(_ h: inout Harness, from address: PeerAddress) -> String? {
        h.receive(sessionInit, from: address)
        guard let call = h.takeKeysCalls().first else {
            let replies = h.takeDatagrams()
            guard case .serverError(let error)? = replies.first.flatMap({ try? Envelope.decodeResponse($0.bytes) }) else {
                return "no reply"
            }
            return error
        }
        var made = IPCKeysResponse()
        made.newSession.sessionID = SecureRandom.identifier()
        made.newSession.sessionKey = Data(SessionCipher.random().keyBytes)
        made.newSession.fingerprint = String(repeating: "0", count: 64)
        h.answerKeys(call.call, .success(made))
        _ = h.takeDatagrams()
        return nil
    }

    @Test func aSourceAtItsSessionLimitGetsAnErrorAndOthersDoNot() throws {
        var h = try Harness(["SESSIONS_PER_SOURCE": "3", "HANDSHAKES_PER_SOURCE": "1000"])
        let crowded = PeerAddress(ip: "192.0.2.7", port: 1000)!
        for _ in 0..<3 { #expect(Self.handshake(&h, from: crowded) == nil) }
        let refused = Self.handshake(&h, from: crowded)
        #expect(refused == ProtocolText.packetFailurePrefix + "too many sessions from your address (3); close some, or wait for them to expire")
        #expect(h.machine.table.count == 3)
        // Another port of the same address is the same source; another address is not.
        #expect(Self.handshake(&h, from: PeerAddress(ip: "192.0.2.7", port: 2000)!) != nil)
        #expect(Self.handshake(&h, from: PeerAddress(ip: "192.0.2.8", port: 1000)!) == nil)
    }

    /// IPv6 sources count by their /64: a host cannot take a new budget per address.
    @Test func ipv6SourcesAreCountedByTheirSlash64() throws {
        var h = try Harness(["SESSIONS_PER_SOURCE": "2", "HANDSHAKES_PER_SOURCE": "1000"])
        #expect(Self.handshake(&h, from: PeerAddress(ip: "2001:db8:1:2::1", port: 1)!) == nil)
        #expect(Self.handshake(&h, from: PeerAddress(ip: "2001:db8:1:2:ffff::9", port: 1)!) == nil)
        #expect(Self.handshake(&h, from: PeerAddress(ip: "2001:db8:1:2::abcd", port: 1)!)?.contains("too many sessions") == true)
        #expect(Self.handshake(&h, from: PeerAddress(ip: "2001:db8:1:3::1", port: 1)!) == nil)
    }

    @Test func atTheSessionOrMemoryLimitNewSessionsAreRefusedAndEstablishedOnesKept() throws {
        var h = try Harness(["MAX_SESSIONS": "4", "HANDSHAKES_PER_SOURCE": "1000"])
        for i in 0..<4 { #expect(Self.handshake(&h, from: PeerAddress(ip: "198.51.100.\(i + 1)", port: 1)!) == nil) }
        let full = Self.handshake(&h, from: PeerAddress(ip: "198.51.100.99", port: 1)!)
        #expect(full?.contains("as many sessions as it takes (4)") == true, "\(full ?? "")")
        #expect(h.machine.table.count == 4)

        var m = try Harness(["EDGE_MEMORY_LIMIT_MB": "64", "HANDSHAKES_PER_SOURCE": "1000"])
        #expect(Self.handshake(&m, from: PeerAddress(ip: "198.51.100.1", port: 1)!) == nil)
        m.machine.memoryInUse = 65 << 20
        #expect(Self.handshake(&m, from: PeerAddress(ip: "198.51.100.2", port: 1)!)?.contains("memory limit") == true)
        #expect(m.machine.table.count == 1)
        m.machine.memoryInUse = 63 << 20
        #expect(Self.handshake(&m, from: PeerAddress(ip: "198.51.100.2", port: 1)!) == nil)
    }

    /// Sessions that never log in are capped in number, and leave memory
    /// after two minutes of silence, which makes room for new ones.
    @Test func sessionsThatNeverLogInAreCappedAndLeaveMemorySoon() throws {
        var h = try Harness(["MAX_ANONYMOUS_SESSIONS": "3", "HANDSHAKES_PER_SOURCE": "1000"])
        for i in 0..<3 { #expect(Self.handshake(&h, from: PeerAddress(ip: "203.0.113.\(i + 1)", port: 1)!) == nil) }
        #expect(Self.handshake(&h, from: PeerAddress(ip: "203.0.113.9", port: 1)!)?.contains("as many sessions") == true)
        h.advance(milliseconds: 119_000)
        #expect(h.machine.table.count == 3)
        h.advance(milliseconds: 11_000)
        #expect(h.machine.table.count == 0)
        #expect(Self.handshake(&h, from: PeerAddress(ip: "203.0.113.9", port: 1)!) == nil)
    }
}

extension EdgeMachineTests {
    /// udpchat-keys answered "busy" (its signing queue was full): the client
    /// hears so at once, and nothing of a session is kept.
    @Test func aHandshakeKeysIsTooBusyForIsRefusedAndKeepsNothing() throws {
        var h = try Harness()
        h.receive(Self.sessionInit, from: PeerAddress(ip: "192.0.2.50", port: 1)!)
        let call = try #require(h.takeKeysCalls().first)
        var busy = IPCKeysResponse()
        busy.failure = IPCFailure(ChatError(.busy, "as many waiting as it takes"))
        h.answerKeys(call.call, .success(busy))
        let replies = h.takeDatagrams().compactMap { try? Envelope.decodeResponse($0.bytes) }
        #expect(replies == [.serverError(message: ProtocolText.packetFailurePrefix + "the server is busy; try again")])
        #expect(h.machine.table.count == 0)
    }
}
