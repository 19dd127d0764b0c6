import ArgumentParser
import ChatWire
import IPC
import Ops

struct PlaneKeys: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plane-keys",
        abstract: "Create the CURVE key pairs (one per program: keys, store, edge, ai) that tcp:// endpoints need; keeps existing ones.",
        discussion: """
            Each program reads its own ROLE.key and its peers' ROLE.pub from CURVE_DIR. On several hosts, copy \
            to each host the .key of the programs it runs and every .pub. --owner ROLE=UID:GID gives a \
            program's secret key to its user (as root), so no other program can read it.
            """)

    @OptionGroup var options: KeysOptions
    @Option(name: .customLong("curve-dir"), help: "Where to write them (default: CURVE_DIR, else curve/ in the key directory).")
    var curveDir: String?
    @Option(name: .customLong("owner"), help: "ROLE=UID:GID: the owner of ROLE.key (repeatable).")
    var owners: [String] = []

    func run() throws {
        try ProgramIO.reportingFailure(of: "udpchat-keys") {
            let (settings, common) = try loadSettings()
            var owned: [PlaneRole: (uid: UInt32, gid: UInt32)] = [:]
            for owner in owners {
                let parts = owner.split(separator: "=", maxSplits: 1)
                let ids = parts.count == 2 ? parts[1].split(separator: ":") : []
                guard parts.count == 2, let role = PlaneRole(rawValue: String(parts[0])), ids.count == 2, let uid = UInt32(ids[0]),
                    let gid = UInt32(ids[1])
                else {
                    throw ChatError.keys("--owner \(owner): expected ROLE=UID:GID with ROLE one of keys, store, edge, ai")
                }
                owned[role] = (uid, gid)
            }
            let directory = curveDir ?? options.curveDirectory(settings, common)
            let made = try PlaneSecurity.generate(in: directory, owners: owned)
            print("CURVE keys in \(directory): made \(made.isEmpty ? "none (all there)" : made.map(\.rawValue).joined(separator: ", "))")
        }
    }
}
