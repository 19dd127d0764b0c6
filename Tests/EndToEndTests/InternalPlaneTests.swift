import ChatWire
import Crypto
import CryptoExtras
import Foundation
import IPC
import IPCMessages
import Logging
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What the programs behind the edge do for whoever reaches their sockets
/// (docs/security.md, "Trust between the programs").
@Suite(.serialized, .timeLimit(.minutes(3)))
struct InternalPlaneTests {
    /// A typed client of the running udpchat-keys, on its own reactor.
    static func keysClient(_ system: TestSystem) throws -> (KeysClient, ZMQReactor) {
        let endpoint = system.environment["KEYS_ENDPOINT"] ?? "ipc://\(system.root.path)/run/keys.sock"
        let reactor = ZMQReactor(context: ZMQContext(), name: "test-keys")
        let rpc = try RPCClient(reactor: reactor, endpoint: endpoint, name: "udpchat-keys", logger: Logger(label: "test"))
        reactor.start()
        return (KeysClient(rpc: rpc, timeout: .seconds(10)), reactor)
    }

    /// Keys draws the session key itself: only the client's private key
    /// opens it, the identity's signature covers it, and the wrapped copy
    /// unwraps to it.
    @Test func aNewSessionsKeyOpensOnlyForTheClientAndCarriesTheIdentitysSignature() async throws {
        try await withSystem { system in
            let (keys, reactor) = try Self.keysClient(system)
            defer { reactor.shutdown() }
            let client = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
            var request = IPCKeysRequest()
            request.newSession.clientKeyDer = client.publicKey.derRepresentation
            let response = try await keys.call(request)
            guard case .newSession(let made)? = response.result else {
                Issue.record("no new session: \(response)")
                return
            }
            #expect(made.sessionKey.count == WireSpec.sessionKeyBytes && made.sessionID.count == 2 * WireSpec.idBytes)
            let opened = try client.decrypt(made.encryptedKey, padding: .PKCS1_OAEP_SHA256)
            #expect(opened == made.sessionKey)
            #expect(
                HandshakeCrypto.verify(
                    signature: [UInt8](made.signature), over: [UInt8](made.sessionKey), publicKeyDER: [UInt8](made.publicKeyDer)))
            #expect(HandshakeCrypto.fingerprint(ofPublicKeyDER: [UInt8](made.publicKeyDer)) == made.fingerprint)
            var unwrap = IPCKeysRequest()
            unwrap.unwrapSessionKey.sessionID = made.sessionID
            unwrap.unwrapSessionKey.wrappedKey = made.wrappedKey
            #expect(try await keys.call(unwrap).unwrapped.sessionKey == made.sessionKey)
            // Two sessions never share a key or an id.
            let second = try await keys.call(request).newSession
            #expect(second.sessionKey != made.sessionKey && second.sessionID != made.sessionID)
            // A key that is not an RSA public key is refused, saying why.
            var bad = IPCKeysRequest()
            bad.newSession.clientKeyDer = Data("not a key".utf8)
            let refused = try await keys.call(bad)
            #expect(refused.failure.code == "invalid_client_key", "\(refused)")
            #expect(refused.failure.message.contains("not an RSA public key"))
        }
    }

    /// The operation that signed 32 bytes of the caller's choosing (field 2
    /// of the request) is gone: such a request gets no signature.
    @Test func keysSignsNoBytesTheCallerChose() async throws {
        try await withSystem { system in
            let (keys, reactor) = try Self.keysClient(system)
            defer { reactor.shutdown() }
            let chosen = [UInt8](repeating: 0x41, count: 32)
            let sessionId = Array(String(repeating: "ab", count: 16).utf8)
            // SignHandshake{session_id = 1, session_key = 2} as field 2 of KeysRequest.
            let inner: [UInt8] = [0x0A, UInt8(sessionId.count)] + sessionId + [0x12, UInt8(chosen.count)] + chosen
            let body: [UInt8] = [0x12, UInt8(inner.count)] + inner
            let reply = try await keys.rpc.call(body, timeout: .seconds(10))
            let response = try IPCKeysResponse(serializedBytes: reply)
            #expect(response.failure.code == "invalid_request", "\(response)")
            // Nothing in the reply verifies as the identity's signature over the chosen bytes.
            let identity = try await keys.call(.identity).identity
            #expect(!identity.publicKeyDer.isEmpty)
            for candidate in Self.byteStrings(in: reply) {
                #expect(
                    !HandshakeCrypto.verify(signature: candidate, over: chosen, publicKeyDER: [UInt8](identity.publicKeyDer)))
            }
        }
    }

    /// Starts `udpchat-NAME` and returns its stderr once it has exited, or
    /// nil (after stopping it) when it started serving instead.
    static func refusal(_ name: String, environment: [String: String], in directory: URL) async throws -> String? {
        let process = try ProgramProcess(
            name: name, executable: try TestSystem.binaryDirectory().appendingPathComponent("udpchat-\(name)"),
            environment: environment, directory: directory)
        do {
            _ = try await process.waitForLine(startingWith: "udpchat-\(name) ready")
        } catch {
            if let status = process.terminationStatus {
                #expect(status != 0, "\(name) exited with status \(status)")
                return process.log()
            }
            await process.stop(signal: SIGKILL)
            throw error
        }
        await process.stop(signal: SIGKILL)
        return nil
    }

    /// Sockets in a directory every local user can enter are refused at
    /// start, by the programs that bind them and by those that connect.
    @Test func programsRefuseASocketDirectoryOtherUsersCanReach() async throws {
        let root = try DeployTests.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let run = root.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        let environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "DATA_DIR": root.path, "SERVER_IP": "127.0.0.1",
            "SERVER_PORT": "0", "KEYS_METRICS_PORT": "0", "STORE_METRICS_PORT": "0", "EDGE_METRICS_PORT": "0", "AI_METRICS_PORT": "0",
        ]
        let generated = try await runDetached(
            try TestSystem.binaryDirectory().appendingPathComponent("udpchat-keys"), ["generate"], environment: environment,
            directory: root)
        try #require(generated.status == 0, "\(generated.output)")
        for name in ["keys", "store", "edge", "ai"] {
            let refusal = try await Self.refusal(name, environment: environment, in: root)
            #expect(refusal?.contains("the socket directory \(run.path) is open to every local user (mode 755)") == true, "\(name): \(refusal ?? "it started")")
        }
        // Closed to others, the same directory serves.
        chmod(run.path, 0o750)
        let keys = try ProgramProcess(
            name: "keys", executable: try TestSystem.binaryDirectory().appendingPathComponent("udpchat-keys"), environment: environment,
            directory: root)
        _ = try await keys.waitForLine(startingWith: "udpchat-keys ready")
        await keys.stop()
        // A directory a program creates is its owner's alone.
        try FileManager.default.removeItem(at: run)
        let store = try ProgramProcess(
            name: "store", executable: try TestSystem.binaryDirectory().appendingPathComponent("udpchat-store"),
            environment: environment, directory: root)
        _ = try await store.waitForLine(startingWith: "udpchat-store ready")
        await store.stop()
        #expect(DeployTests.entry(run.path)?.mode == 0o700)
    }

    /// The programs on tcp:// endpoints, as on several hosts.
    static func tcpSettings() throws -> [String: String] {
        [
            "KEYS_ENDPOINT": "tcp://127.0.0.1:\(try PrometheusTests.freeTCPPort())",
            "STORE_ENDPOINT": "tcp://127.0.0.1:\(try PrometheusTests.freeTCPPort())",
            "EVENTS_ENDPOINT": "tcp://127.0.0.1:\(try PrometheusTests.freeTCPPort())",
            "JOBS_ENDPOINT": "tcp://127.0.0.1:\(try PrometheusTests.freeTCPPort())",
            "AI_HEARTBEAT_MS": "200",
        ]
    }

    /// An RPC client on `endpoint` holding `role`'s CURVE keys (nil: no CURVE at all).
    static func client(_ system: TestSystem, _ endpoint: String, as role: PlaneRole?, server: PlaneRole) throws -> (RPCClient, ZMQReactor) {
        let security = try role.flatMap { role in
            try PlaneSecurity.load(
                directory: system.root.path + "/keys/curve", role: role, binds: [], connects: [(endpoint, server)])
        }
        let reactor = ZMQReactor(context: ZMQContext(security: security), name: "test-\(role?.rawValue ?? "plain")")
        let rpc = try RPCClient(reactor: reactor, endpoint: endpoint, name: server.rawValue, logger: Logger(label: "test"))
        reactor.start()
        return (rpc, reactor)
    }

    /// Over tcp:// every connection is CURVE: the programs chat and take AI
    /// jobs with their own keys, while a key of another role, or no CURVE,
    /// gets no answer from keys or the store, and the refusal is logged.
    @Test func overTCPOnlyEachRolesKeyReachesItsEndpoints() async throws {
        let settings = try Self.tcpSettings()
        try await withSystem(settings: settings) { system in
            // The edge (its keys) talks to keys and store: a whole conversation works.
            let (alice, bob, _, room) = try await system.aliceAndBob(in: "Plane")
            _ = try await alice.sendMessage(roomId: room.roomId, content: "over CURVE")
            let heard = await bob.nextEvent(timeout: .seconds(10)) {
                if case .message(let message) = $0.packet { return message.content == "over CURVE" }
                return false
            }
            #expect(heard != nil)
            // An AI worker (its keys) takes a job over tcp://.
            let provider = try await system.startProvider("hold", reply: "from the worker", delay: 0, name: "model")
            try await system.startWorker(["AI_MODE": "gpt", "OPENAI_BASE_URL": provider.baseURL + "/v1"])
            try alice.askAI(roomId: room.roomId, draft: "")
            let reply = await bob.nextEvent(timeout: .seconds(20)) {
                if case .message(let message) = $0.packet { return message.content == "from the worker" }
                return false
            }
            #expect(reply != nil)

            let pingBody: [UInt8] = try IPCStoreRequest.ping.serializedBytes()
            let identityBody: [UInt8] = try IPCKeysRequest.identity.serializedBytes()
            let keysEndpoint = try #require(settings["KEYS_ENDPOINT"]), storeEndpoint = try #require(settings["STORE_ENDPOINT"])
            // The edge's keys are answered (what the refusals below are measured against).
            let (edgeToKeys, r1) = try Self.client(system, keysEndpoint, as: .edge, server: .keys)
            defer { r1.shutdown() }
            #expect(try IPCKeysResponse(serializedBytes: try await edgeToKeys.call(identityBody, timeout: .seconds(5))).identity.fingerprint.count == 64)
            let (edgeToStore, r2) = try Self.client(system, storeEndpoint, as: .edge, server: .store)
            defer { r2.shutdown() }
            _ = try await edgeToStore.call(pingBody, timeout: .seconds(5))
            // An AI worker's keys reach neither keys nor the store's requests.
            for (endpoint, server, body) in [(keysEndpoint, PlaneRole.keys, identityBody), (storeEndpoint, .store, pingBody)] {
                let (intruder, reactor) = try Self.client(system, endpoint, as: .ai, server: server)
                defer { reactor.shutdown() }
                await #expect { _ = try await intruder.call(body, timeout: .seconds(2)) } throws: { ($0 as? RPCError)?.code == .timeout }
            }
            // Nor does a client without CURVE.
            let (plain, r3) = try Self.client(system, keysEndpoint, as: nil, server: .keys)
            defer { r3.shutdown() }
            await #expect { _ = try await plain.call(identityBody, timeout: .seconds(2)) } throws: { ($0 as? RPCError)?.code == .timeout }
            for log in [system.keys.log(), system.store.log()] {
                let refusals = log.split(separator: "\n").filter { $0.contains("internal connection refused") }
                #expect(refusals.contains { $0.contains("reason=a CURVE key this endpoint does not admit") }, "\(refusals)")
            }
            await alice.close()
            await bob.close()
        }
    }

    /// A program whose tcp:// endpoints have no keys to use refuses to
    /// start, naming the missing file; so does one whose secret key others can read.
    @Test func withoutItsCurveKeyAProgramOnTCPRefusesToStart() async throws {
        let settings = try Self.tcpSettings()
        try await withSystem(settings: settings) { system in
            let curve = system.root.appendingPathComponent("keys/curve")
            try FileManager.default.removeItem(at: curve.appendingPathComponent("edge.key"))
            let environment = system.environment.merging(["SERVER_PORT": "0"]) { $1 }
            let missing = try await Self.refusal("edge", environment: environment, in: system.root)
            #expect(missing?.contains("\(curve.path)/edge.key is missing") == true, "\(missing ?? "it started")")
            chmod(curve.appendingPathComponent("ai.key").path, 0o644)
            let exposed = try await Self.refusal("ai", environment: environment, in: system.root)
            #expect(exposed?.contains("ai.key is readable by others (mode 644)") == true, "\(exposed ?? "it started")")
        }
    }

    /// Every length-delimited field of a protobuf message, nested ones
    /// included (a signature would be one of them).
    static func byteStrings(in bytes: [UInt8]) -> [[UInt8]] {
        var found: [[UInt8]] = []
        var index = 0
        func varint() -> Int? {
            var value = 0, shift = 0
            while index < bytes.count, shift < 63 {
                let byte = bytes[index]
                index += 1
                value |= Int(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while index < bytes.count, let key = varint() {
            switch key & 7 {
            case 0: _ = varint()
            case 2:
                guard let length = varint(), length >= 0, index + length <= bytes.count else { return found }
                let field = Array(bytes[index..<index + length])
                found.append(field)
                found.append(contentsOf: byteStrings(in: field))
                index += length
            default: return found
            }
        }
        return found
    }
}
