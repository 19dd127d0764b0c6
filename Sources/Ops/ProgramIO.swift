import ChatWire
import ArgumentParser
import Foundation
import Logging

/// Process-wide output conventions shared by the programs.
public enum ProgramIO {
    /// Sets up logging to stderr (journald and container runtimes collect it)
    /// at `level`. Call once, first thing.
    public static func bootstrapLogging(level: String) {
        let parsed = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = parsed
            return handler
        }
    }

    /// Prints the line that tells scripts and tests a program is ready, and
    /// flushes it at once (stdout to a pipe is block-buffered otherwise).
    public static func announceReady(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// Prints a message to stderr.
    public static func printError(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }

    /// Runs a command of `program`, turning a failure into one clear line
    /// on stderr ("PROGRAM: why") and exit status 1.
    public static func reportingFailure(of program: String, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as ExitCode {
            throw error
        } catch {
            printError("\(program): \(error)")
            throw ExitCode.failure
        }
    }
}
