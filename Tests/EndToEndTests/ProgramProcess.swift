import Foundation

/// One of the system's programs, started for a test and stopped by PID.
/// Its stdout lines are collected (ready lines are read from there); its
/// stderr goes to a log file that a failing test prints.
final class ProgramProcess: Sendable {
    let name: String
    let logFile: URL
    private let process: Process
    private let lines = MutexBox<[String]>([])

    /// Starts `executable` with exactly `environment` in `directory`.
    init(name: String, executable: URL, arguments: [String] = [], environment: [String: String], directory: URL) throws {
        self.name = name
        logFile = directory.appendingPathComponent("\(name).log")
        FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let log = try FileHandle(forWritingTo: logFile)
        try log.seekToEnd()
        let output = Pipe()
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        process.currentDirectoryURL = directory
        process.standardOutput = output
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        self.process = process
        try process.run()
        let reader = output.fileHandleForReading
        let thread = Thread { [lines] in
            var pending = Data()
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: 0x0a) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    lines.mutate { $0.append(line) }
                }
            }
        }
        thread.start()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var output: [String] { lines.value }

    /// The first stdout line starting with `prefix`, waiting up to `timeout`.
    func waitForLine(startingWith prefix: String, timeout: Duration = .seconds(20)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let line = output.first(where: { $0.hasPrefix(prefix) }) { return line }
            if !process.isRunning {
                throw HarnessError("\(name) exited with status \(process.terminationStatus) before printing '\(prefix)': \(log())")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw HarnessError("\(name) printed no line starting with '\(prefix)' within \(timeout): \(log())")
    }

    /// Sends `signal` and waits up to `timeout` for the exit; SIGKILL after
    /// that. Returns the exit status (or the signal that ended it).
    @discardableResult
    func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(10)) async -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, signal)
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    /// The program's stderr so far.
    func log() -> String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
