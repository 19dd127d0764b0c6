import ChatWire
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The deployment files: the install script into a temporary root, the
/// systemd units through `systemd-analyze verify`, and the container files
/// through deploy/container/check.py.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct DeployTests {
    static let repository = OperationsTests.repository
    static let units = [
        "udpchat.target", "udpchat-keys.service", "udpchat-store.service", "udpchat-edge.service", "udpchat-ai@.service",
        "udpchat-store@.service", "udpchat-edge@.service",
    ]
    /// Templates as `systemd-analyze verify` takes them: one instance each.
    static let instances = ["udpchat-ai@.service": "udpchat-ai@9104.service", "udpchat-store@.service": "udpchat-store@9112.service",
        "udpchat-edge@.service": "udpchat-edge@9113.service"]

    /// A unit file's `Key=value` lines, every value of each key in order
    /// (``last(_:)`` is the one systemd uses for single-valued keys).
    struct Unit {
        var values: [String: [String]] = [:]

        init(_ text: String) {
            for line in text.split(separator: "\n") {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                guard !trimmed.hasPrefix("#"), !trimmed.hasPrefix("["), let equals = trimmed.firstIndex(of: "=") else { continue }
                values[String(trimmed[..<equals]), default: []].append(String(trimmed[trimmed.index(after: equals)...]))
            }
        }

        func last(_ key: String) -> String? { values[key]?.last }
    }

    struct Entry {
        var uid: UInt32
        var gid: UInt32
        var mode: UInt32
        var isDirectory: Bool
    }

    static func entry(_ path: String) -> Entry? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return Entry(uid: info.st_uid, gid: info.st_gid, mode: info.st_mode & 0o7777, isDirectory: info.st_mode & S_IFMT == S_IFDIR)
    }

    /// name → (id, primary group id) from a passwd or group file.
    static func accounts(_ file: URL) throws -> [String: (id: UInt32, group: UInt32)] {
        var result: [String: (UInt32, UInt32)] = [:]
        for line in try String(contentsOf: file, encoding: .utf8).split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 3, let id = UInt32(fields[2]) else { continue }
            result[String(fields[0])] = (id, fields.count >= 4 ? UInt32(fields[3]) ?? id : id)
        }
        return result
    }

    static func install(into root: URL) async throws -> (status: Int32, output: String) {
        try await runDetached(
            URL(fileURLWithPath: "/bin/bash"),
            [
                repository.appendingPathComponent("deploy/install.sh").path, "--destdir", root.path, "--bin-dir",
                try TestSystem.binaryDirectory().path,
            ],
            environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"])
    }

    static func temporaryRoot() throws -> URL {
        var template = Array("/tmp/uc-root-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw HarnessError("mkdtemp failed") }
        return URL(fileURLWithPath: String(cString: made))
    }

    @Test(.enabled(if: getuid() == 0, "the install script creates users and sets owners, so it runs as root (as CI does)"))
    func installingIntoATemporaryRootPutsEveryPathTheUnitsNameInPlace() async throws {
        let root = try Self.temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let first = try await Self.install(into: root)
        try #require(first.status == 0, "\(first.output)")
        #expect(first.output.contains("first install: generating the server keys"))

        let users = try Self.accounts(root.appendingPathComponent("etc/passwd"))
        let groups = try Self.accounts(root.appendingPathComponent("etc/group"))
        let shared = try #require(groups["udpchat"]?.id, "group udpchat in the target root")
        func path(_ absolute: String) -> String { root.path + absolute }
        func expectEntry(_ absolute: String, owner: UInt32, group: UInt32, mode: UInt32, directory: Bool, _ why: String) {
            guard let entry = Self.entry(path(absolute)) else {
                Issue.record("\(absolute) (\(why)) does not exist in the target root")
                return
            }
            #expect(entry.isDirectory == directory, "\(absolute): \(directory ? "a directory" : "a file")")
            #expect(
                entry.uid == owner && entry.gid == group,
                "\(absolute) (\(why)): owner \(entry.uid):\(entry.gid), expected \(owner):\(group)")
            #expect(entry.mode == mode, "\(absolute) (\(why)): mode \(String(entry.mode, radix: 8)), expected \(String(mode, radix: 8))")
        }

        var checked = 0
        var parsed: [String: Unit] = [:]
        for name in Self.units {
            let file = "/etc/systemd/system/\(name)"
            expectEntry(file, owner: 0, group: 0, mode: 0o644, directory: false, "unit")
            let unit = Unit(try String(contentsOfFile: path(file), encoding: .utf8))
            if let documentation = unit.last("Documentation"), documentation.hasPrefix("file:") {
                expectEntry(String(documentation.dropFirst(5)), owner: 0, group: 0, mode: 0o644, directory: false, "\(name) Documentation")
                checked += 1
            }
            guard name.hasSuffix(".service") else { continue }
            let user = try #require(unit.last("User"), "\(name) names its User")
            let account = try #require(users[user], "user \(user) exists in the target root")
            let unitGroup = try #require(unit.last("Group").flatMap { groups[$0]?.id }, "\(name)'s Group= exists")
            // Every program reads the env file as the group udpchat (its
            // primary group, or a supplementary one where Group= is its socket group).
            let supplementary = (unit.values["SupplementaryGroups"] ?? []).flatMap { $0.split(separator: " ").map(String.init) }
            #expect(account.group == shared, "\(user)'s primary group is udpchat")
            #expect(unitGroup == shared || supplementary.contains("udpchat"), "\(name) runs with the group udpchat")
            #expect(unit.last("Type") == "notify" && unit.last("NoNewPrivileges") == "yes" && unit.last("ProtectSystem") == "strict")
            let command = try #require(unit.last("ExecStart")?.split(separator: " ").first.map(String.init))
            expectEntry(command, owner: 0, group: 0, mode: 0o755, directory: false, "\(name) ExecStart")
            let environmentFile = try #require(unit.last("EnvironmentFile"))
            expectEntry(
                environmentFile, owner: 0, group: shared, mode: 0o640, directory: false, "\(name) EnvironmentFile (it may hold API keys)")
            expectEntry(
                (environmentFile as NSString).deletingLastPathComponent, owner: 0, group: shared, mode: 0o750, directory: true,
                "\(name) EnvironmentFile's directory")
            if let directory = unit.last("WorkingDirectory"), !directory.hasPrefix("/var/lib/") {
                #expect(Self.entry(path(directory))?.isDirectory == true, "\(name) WorkingDirectory \(directory)")
            }
            if let state = unit.last("StateDirectory") {
                let mode = UInt32(try #require(unit.last("StateDirectoryMode")), radix: 8) ?? 0
                #expect(mode == 0o700, "\(name): nobody else reads its state")
                // systemd gives a state directory the unit's User= and Group=.
                expectEntry("/var/lib/\(state)", owner: account.id, group: unitGroup, mode: mode, directory: true, "\(name) StateDirectory")
                if let working = unit.last("WorkingDirectory") { #expect(working == "/var/lib/\(state)") }
                checked += 1
            }
            // RuntimeDirectory= lives on /run, which systemd creates at each start:
            // nothing to install; the env file's endpoints must point into it.
            if let runtime = unit.last("RuntimeDirectory") {
                // (A template's instances bind in their own directories, named in the unit.)
                let env = try String(contentsOfFile: path(environmentFile), encoding: .utf8)
                    + (unit.values["Environment"] ?? []).joined(separator: "\n")
                for directory in runtime.split(separator: " ") {
                    #expect(env.contains("ipc:///run/\(directory)/"), "the env file's (or the unit's) endpoints use /run/\(directory)")
                }
                // Closed to other users (programs refuse a socket directory that is not).
                let mode = UInt32(try #require(unit.last("RuntimeDirectoryMode")), radix: 8) ?? 0o777
                #expect(mode & 0o007 == 0, "\(name): RuntimeDirectoryMode \(String(mode, radix: 8))")
            }
            parsed[name] = unit
            checked += 1
        }
        #expect(checked >= 10)

        // Who reaches which socket: each socket directory's group, and the
        // programs that have it (docs/security.md).
        let env = try String(contentsOfFile: path("/etc/udpchat/udpchat.env"), encoding: .utf8)
        // A RuntimeDirectory= takes its unit's Group=; /run/udpchat-jobs is made by tmpfiles.d.
        let tmpfiles = try String(contentsOfFile: path("/etc/tmpfiles.d/udpchat.conf"), encoding: .utf8)
        func directoryGroup(_ unit: String, _ directory: String) -> String? {
            if parsed[unit]?.last("RuntimeDirectory")?.split(separator: " ").contains(Substring(directory)) == true {
                return parsed[unit]?.last("Group")
            }
            let lines: [[Substring]] = tmpfiles.split(separator: "\n").map { $0.split(separator: " ") }
            let target = Substring("/run/\(directory)")
            guard let line = lines.first(where: { fields in fields.count >= 5 && fields[0] == "d" && fields[1] == target }) else { return nil }
            #expect(UInt32(line[2], radix: 8).map { $0 & 0o007 == 0 } == true, "/run/\(directory) is closed to others")
            #expect(line[3] == "udpchat-store", "/run/\(directory) belongs to the store, which binds in it")
            #expect(parsed[unit]?.values["ReadWritePaths"]?.contains("/run/\(directory)") == true, "\(unit) may write /run/\(directory)")
            return String(line[4])
        }
        func programGroups(_ unit: String) -> Set<String> {
            var all: Set<String> = [parsed[unit]?.last("Group") ?? ""]
            for line in parsed[unit]?.values["SupplementaryGroups"] ?? [] { all.formUnion(line.split(separator: " ").map(String.init)) }
            return all
        }
        let sockets: [(endpoint: String, directory: String, unit: String)] = [
            ("KEYS_ENDPOINT", "udpchat-keys", "udpchat-keys.service"), ("STORE_ENDPOINT", "udpchat-store", "udpchat-store.service"),
            ("EVENTS_ENDPOINT", "udpchat-store", "udpchat-store.service"), ("JOBS_ENDPOINT", "udpchat-jobs", "udpchat-store.service"),
        ]
        for socket in sockets {
            #expect(env.contains("\n\(socket.endpoint)=ipc:///run/\(socket.directory)/"), "\(socket.endpoint) is in /run/\(socket.directory)")
            let group = try #require(directoryGroup(socket.unit, socket.directory), "the group of /run/\(socket.directory)")
            #expect(groups["\(group)"] != nil, "group \(group) exists in the target root")
            #expect(group != "udpchat", "/run/\(socket.directory) is not open to every udpchat program")
            let reaching = Set(["udpchat-edge.service", "udpchat-ai@.service"].filter { programGroups($0).contains(group) })
            let expected: Set<String> = socket.directory == "udpchat-jobs" ? ["udpchat-ai@.service"] : ["udpchat-edge.service"]
            #expect(reaching == expected, "/run/\(socket.directory) (group \(group)) is reached by \(reaching.sorted())")
        }

        // The private key: udpchat-keys alone reads it.
        let keysUser = try #require(users["udpchat-keys"]).id
        let keysGroup = try #require(groups["udpchat-keys-clients"]).id
        expectEntry(
            "/var/lib/udpchat-keys/server_private_key.pem", owner: keysUser, group: keysGroup, mode: 0o600, directory: false, "identity key")
        expectEntry(
            "/var/lib/udpchat-keys/key_encryption_key", owner: keysUser, group: keysGroup, mode: 0o600, directory: false, "key-encryption key")
        for other in ["udpchat-store", "udpchat-edge", "udpchat-ai"] { #expect(users[other]?.id != keysUser) }
        expectEntry("/etc/sysusers.d/udpchat.conf", owner: 0, group: 0, mode: 0o644, directory: false, "sysusers")
        expectEntry("/etc/tmpfiles.d/udpchat.conf", owner: 0, group: 0, mode: 0o644, directory: false, "tmpfiles")

        // Installing again (an upgrade) keeps the operator's settings and the key.
        let key = try Data(contentsOf: URL(fileURLWithPath: path("/var/lib/udpchat-keys/server_private_key.pem")))
        let envPath = path("/etc/udpchat/udpchat.env")
        try (try String(contentsOfFile: envPath, encoding: .utf8) + "SERVER_PORT=4242\n").write(
            toFile: envPath, atomically: false, encoding: .utf8)
        let again = try await Self.install(into: root)
        #expect(again.status == 0, "\(again.output)")
        #expect(again.output.contains("keeping /etc/udpchat/udpchat.env") && again.output.contains("keeping the identity key"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: path("/var/lib/udpchat-keys/server_private_key.pem"))) == key)
        #expect(try String(contentsOfFile: envPath, encoding: .utf8).hasSuffix("SERVER_PORT=4242\n"))
        #expect(try Self.accounts(root.appendingPathComponent("etc/passwd"))["udpchat-keys"]?.id == keysUser, "same users")

        try await Self.verifyUnits(in: root)
    }

    /// `systemd-analyze verify` on the installed units (with the host's own
    /// units copied in, for the targets they name). Any message fails: it
    /// exits 0 on unknown keys and bad values, and only says so.
    static func verifyUnits(in root: URL) async throws {
        let systemUnits = URL(fileURLWithPath: "/lib/systemd/system")
        try #require(
            FileManager.default.fileExists(atPath: "/usr/bin/systemd-analyze"),
            "systemd-analyze is missing: scripts/bootstrap.sh --test installs the systemd package")
        let copy = root.appendingPathComponent("usr/lib/systemd/system")
        if !FileManager.default.fileExists(atPath: copy.path) {
            try FileManager.default.createDirectory(at: copy.deletingLastPathComponent(), withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: systemUnits, to: copy)
        }
        let names = units.map { instances[$0] ?? $0 }
        let result = try await runDetached(
            URL(fileURLWithPath: "/usr/bin/systemd-analyze"), ["verify", "--root=\(root.path)", "--man=no"] + names,
            environment: ["PATH": "/usr/bin:/bin", "SYSTEMD_LOG_COLOR": "0"], directory: root)
        #expect(result.status == 0 && result.output.isEmpty, "systemd-analyze verify: \(result.output)")

        // The check catches what it should: a misspelt key in one unit.
        let edge = root.appendingPathComponent("etc/systemd/system/udpchat-edge.service")
        let original = try String(contentsOf: edge, encoding: .utf8)
        try original.replacingOccurrences(of: "\nProtectHome=yes", with: "\nProtectHomes=yes").write(
            to: edge, atomically: false, encoding: .utf8)
        let broken = try await runDetached(
            URL(fileURLWithPath: "/usr/bin/systemd-analyze"), ["verify", "--root=\(root.path)", "--man=no", "udpchat-edge.service"],
            environment: ["PATH": "/usr/bin:/bin", "SYSTEMD_LOG_COLOR": "0"], directory: root)
        #expect(broken.output.contains("Unknown key") && broken.output.contains("ProtectHomes"), "\(broken.output)")
        try original.write(to: edge, atomically: false, encoding: .utf8)
    }

    static func checkContainerFiles(root: URL) async throws -> (status: Int32, output: String) {
        try await runDetached(
            URL(fileURLWithPath: "/usr/bin/env"),
            ["python3", repository.appendingPathComponent("deploy/container/check.py").path, "--root", root.path])
    }

    @Test func theContainerFilesAreConsistentAndDocumented() async throws {
        let result = try await Self.checkContainerFiles(root: Self.repository)
        #expect(result.status == 0, "\(result.output)")

        // And the check fails when it should, on copies with one defect each.
        let files = [
            ".env.sample", "README.md", "scripts/bootstrap.sh", "deploy/install.sh", "deploy/container/compose.yaml",
            "deploy/container/Containerfile", "deploy/container/healthcheck", "Package.swift",
        ]
        let defects: [(file: String, from: String, to: String, message: String)] = [
            ("deploy/container/compose.yaml", "${LOG_LEVEL:-info}", "${LOG_LEVELS:-info}", "${LOG_LEVELS}"),
            (
                "deploy/container/compose.yaml", "    command: [\"udpchat-ai\"]",
                "    container_name: worker\n    command: [\"udpchat-ai\"]", "container_name"
            ),
            (
                "deploy/container/compose.yaml", "\"udpchat-healthcheck\", \"9102\"", "\"udpchat-healthcheck\", \"9103\"",
                "serves health on 9102"
            ),
            ("deploy/container/compose.yaml", "      - database:/var/lib", "      - db:/var/lib", "undeclared volume 'db'"),
            ("deploy/container/compose.yaml", "services:", "services: [", "does not parse"),
            (
                "deploy/container/Containerfile", "RUN swift build -c release --static-swift-stdlib", "RUN swift build -c release",
                "the README with"
            ),
            ("deploy/container/Containerfile", "libsqlite3-dev libssl-dev", "libssl-dev", "does not install libsqlite3-dev"),
            ("deploy/container/Containerfile", "libssl-dev pkg-config", "pkg-config", "does not install libssl-dev"),
            // The postgres profile.
            ("deploy/container/compose.yaml", "${POSTGRES_EDGE_PORTS:-9999-10008}", "${POSTGRES_EDGE_PORTS:-9999}", "one host port"),
            ("deploy/container/compose.yaml", "EDGE_ID: edge-%H", "EDGE_ID: edge", "needs an EDGE_ID with %H"),
            (
                "deploy/container/compose.yaml", "EVENTS_ENDPOINT: tcp://pg-store-1:7003,tcp://pg-store-2:7003",
                "EVENTS_ENDPOINT: tcp://pg-store-1:7003", "not every store of the profile"
            ),
            ("deploy/container/compose.yaml", "postgres://udpchat@postgres:", "postgres://udpchat@127.0.0.1:", "naming the profile's PostgreSQL service"),
            ("deploy/container/compose.yaml", "tcp://pg-store-2:7004", "tcp://pg-store-1:7004", "takes jobs from store 'pg-store-2'"),
            ("deploy/container/compose.yaml", "networks: [backend, database]", "networks: [backend]", "shares no network"),
            ("deploy/container/compose.yaml", "[\"CMD\", \"pg_isready\"", "[\"pg_isready\"", "needs a healthcheck test"),
            ("deploy/container/compose.yaml", "      JOBS_ENDPOINT: tcp://store:7004", "      JOBS_ENDPOINT: tcp://pg-store-1:7004", "its profiles do not start"),
            (
                "deploy/container/compose.yaml", "      store: { condition: service_healthy }\n    extra_hosts",
                "      pg-store-1: { condition: service_healthy }\n    extra_hosts", "depends on 'pg-store-1', which its profiles do not start"
            ),
            ("deploy/container/compose.yaml", "      - udpchat-keys\n      - plane-keys", "      - udpchat-key\n      - plane-keys", "not a udpchat program"),
            ("deploy/container/compose.yaml", "chown 10002:999", "chown 10003:999", "the stores run as"),
            (
                "deploy/container/compose.yaml", "POSTGRES_PASSWORD_FILE: /var/lib/udpchat/postgres-secret/password",
                "POSTGRES_PASSWORD_FILE: /run/secrets/password", "reads its password from"
            ),
        ]
        for defect in defects {
            let root = try Self.temporaryRoot()
            defer { try? FileManager.default.removeItem(at: root) }
            for file in files {
                let target = root.appendingPathComponent(file)
                try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                try FileManager.default.copyItem(at: Self.repository.appendingPathComponent(file), to: target)
            }
            for directory in ["Sources", "Tests", "Protos"] {
                try FileManager.default.createDirectory(at: root.appendingPathComponent(directory), withIntermediateDirectories: true)
            }
            let target = root.appendingPathComponent(defect.file)
            let text = try String(contentsOf: target, encoding: .utf8)
            try #require(text.contains(defect.from), "the defect's text is in \(defect.file)")
            try text.replacingOccurrences(of: defect.from, with: defect.to).write(to: target, atomically: false, encoding: .utf8)
            let result = try await Self.checkContainerFiles(root: root)
            #expect(result.status == 1 && result.output.contains(defect.message), "\(defect.message): \(result.output)")
        }
    }
}
