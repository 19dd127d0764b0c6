import Foundation
import Testing

@testable import ChatWire
@testable import IPC
import Ops

/// CURVE keys for the programs' tcp:// endpoints.
@Suite struct PlaneSecurityTests {
    /// An edge that lists several stores knows the store's key for each of
    /// their endpoints (it connects to each on its own).
    @Test func anEdgeKnowsTheKeyOfEveryStoreItLists() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("udpchat-curve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try PlaneSecurity.generate(in: directory.path)
        let stores = ["tcp://10.0.0.5:7002", "tcp://10.0.0.6:7002"]
        let events = ["tcp://10.0.0.5:7003", "tcp://10.0.0.6:7003"]
        let settings = try CommonSettings(
            SettingsReader(environment: [
                "CURVE_DIR": directory.path, "KEYS_ENDPOINT": "tcp://10.0.0.4:7001",
                "STORE_ENDPOINT": stores.joined(separator: ","), "EVENTS_ENDPOINT": events.joined(separator: ", "),
            ]))
        let security = try #require(try settings.planeSecurity(for: .edge))
        let storeFile = try String(contentsOfFile: PlaneSecurity.publicFile(.store, in: directory.path), encoding: .utf8)
        let storeKey = try #require(storeFile.split(separator: "\n").first { !$0.hasPrefix("#") }.flatMap { Z85.decode(String($0)) })
        for endpoint in stores + events {
            #expect(security.clients[endpoint] == storeKey, "\(endpoint)")
        }
        #expect(security.clients["tcp://10.0.0.4:7001"] != nil && security.clients["tcp://10.0.0.4:7001"] != storeKey)
    }
}
