import Foundation

/// CPU time and resident memory of a running program, read from /proc
/// (Linux): what each server program spent during a bench run.
struct ProcessUsage: Sendable {
    var name: String
    var pid: Int32
    /// User plus system CPU seconds since the process started.
    var cpuSeconds: Double
    var rssBytes: Int

    /// Clock ticks per second of /proc/PID/stat's times (sysconf(_SC_CLK_TCK)).
    private static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// The usage of `pid` now; nil when it is gone or unreadable.
    static func read(pid: Int32, name: String) -> ProcessUsage? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        var rss = 0
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            rss = (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        return ProcessUsage(name: name, pid: pid, cpuSeconds: (user + system) / ticksPerSecond, rssBytes: rss)
    }

    /// Processes whose command name (as /proc/PID/comm has it) is one of `names`.
    static func find(_ names: [String]) -> [(name: String, pid: Int32)] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var found: [(String, Int32)] = []
        for entry in entries {
            guard let pid = Int32(entry),
                let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8).trimmingCharacters(
                    in: .whitespacesAndNewlines),
                names.contains(comm)
            else { continue }
            found.append((comm, pid))
        }
        return found.sorted { $0.0 < $1.0 }
    }
}
