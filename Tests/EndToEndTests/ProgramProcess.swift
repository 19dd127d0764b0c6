import ChatWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One of the system's programs, started for a test and stopped by PID.
/// Its stdout lines are collected (ready lines are read from there); its
/// stderr goes to a log file that a failing test prints.
///
/// Started with posix_spawn and a clean signal state: Foundation's Process
/// passes on the spawning thread's blocked signals, and a shell started
/// with SIGINT blocked can never run its Ctrl-C trap.
final class ProgramProcess: Sendable {
    let name: String
    let logFile: URL
    let pid: pid_t
    private let lines = MutexBox<[String]>([])
    private let exitStatus = MutexBox<Int32?>(nil)

    /// Starts `executable` with exactly `environment` in `directory`.
    init(name: String, executable: URL, arguments: [String] = [], environment: [String: String], directory: URL) throws {
        self.name = name
        logFile = directory.appendingPathComponent("\(name).log")
        let logFD = open(logFile.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        var pipeFDs: [Int32] = [-1, -1]
        guard logFD >= 0, pipe(&pipeFDs) == 0 else { throw HarnessError("cannot open the output of \(name)") }
        defer {
            close(logFD)
            close(pipeFDs[1])
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        // posix_spawn has no portable chdir action here: a shell changes
        // directory and then execs the program, which keeps its PID.
        let script = #"cd "$1" && shift && exec "$@""#
        let argv = (["/bin/sh", "-c", script, "sh", directory.path, executable.path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, "/bin/sh", &actions, &attributes, argv, envp)
        guard rc == 0 else { throw HarnessError("cannot start \(executable.path): \(String(cString: strerror(rc)))") }
        pid = child
        let reader = FileHandle(fileDescriptor: pipeFDs[0], closeOnDealloc: true)
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

    var output: [String] { lines.value }

    /// Whether the process is still running (reaps it when it is not).
    var isRunning: Bool {
        if exitStatus.value != nil { return false }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        guard result == pid else { return result == 0 }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (they are C macros).
        let signal = status & 0x7f
        exitStatus.value = signal == 0 ? (status >> 8) & 0xff : 128 + signal
        return false
    }

    /// Exit status, or 128 + the signal that ended it; nil while running.
    var terminationStatus: Int32? {
        _ = isRunning
        return exitStatus.value
    }

    /// The first stdout line starting with `prefix`, waiting up to `timeout`.
    func waitForLine(startingWith prefix: String, timeout: Duration = .seconds(20)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let line = output.first(where: { $0.hasPrefix(prefix) }) { return line }
            if !isRunning {
                throw HarnessError("\(name) exited with status \(terminationStatus ?? -1) before printing '\(prefix)': \(log())")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw HarnessError("\(name) printed no line starting with '\(prefix)' within \(timeout): \(log())")
    }

    /// Sends `signal` and waits up to `timeout` for the exit; SIGKILL after
    /// that. Returns the exit status (128 + signal when a signal ended it).
    @discardableResult
    func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(10)) async -> Int32 {
        guard isRunning else { return terminationStatus ?? -1 }
        kill(pid, signal)
        let deadline = ContinuousClock.now + timeout
        while isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if isRunning {
            kill(pid, SIGKILL)
            while isRunning { try? await Task.sleep(for: .milliseconds(10)) }
        }
        return terminationStatus ?? -1
    }

    /// The program's stderr so far.
    func log() -> String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
