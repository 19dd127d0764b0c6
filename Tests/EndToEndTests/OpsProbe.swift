import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Plain HTTP/1.0 GETs against a program's operations endpoint on
/// 127.0.0.1, with a 5-second deadline on every step.
enum OpsProbe {
    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: String
    }

    /// One metric of `process` now (summed over `labels`), from the port in its ready line.
    static func metric(_ process: ProgramProcess, ready: String, _ name: String, _ labels: [String] = []) throws -> Double {
        let port = try OperationsTests.metricsPort(process, ready: ready)
        return total(samples(try get(port: port, path: "/metrics").body), name, labels)
    }

    static func get(port: Int, path: String) throws -> Reply {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(errno)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw HarnessError("connect to 127.0.0.1:\(port) failed: errno \(errno)") }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        guard send(fd, request, request.count, 0) == request.count else { throw HarnessError("send failed: errno \(errno)") }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count < 0 { throw HarnessError("no answer from 127.0.0.1:\(port)\(path): errno \(errno)") }
            if count == 0 { break }
            response += buffer[0..<count]
            if response.count > 16 << 20 { throw HarnessError("answer over 16 MiB") }
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw HarnessError("no HTTP header end in '\(text.prefix(200))'") }
        let head = text[..<split.lowerBound].split(separator: "\r\n")
        guard let statusLine = head.first, let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else {
            throw HarnessError("bad status line in '\(text.prefix(200))'")
        }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Reply(status: status, headers: headers, body: String(text[split.upperBound...]))
    }

    /// Samples of a Prometheus text exposition: `name{labels}` to value.
    static func samples(_ exposition: String) -> [String: Double] {
        var result: [String: Double] = [:]
        for line in exposition.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            result[String(line[..<space])] = value
        }
        return result
    }

    /// The metric families a program declares (`# TYPE name kind`).
    static func families(_ exposition: String) -> Set<String> {
        Set(
            exposition.split(separator: "\n").compactMap { line -> String? in
                let parts = line.split(separator: " ")
                return parts.count >= 3 && parts[0] == "#" && parts[1] == "TYPE" ? String(parts[2]) : nil
            })
    }

    /// The sum of every sample of `name` whose labels contain all of `labels` (`key="value"`).
    static func total(_ samples: [String: Double], _ name: String, _ labels: [String] = []) -> Double {
        samples.filter { key, _ in
            let base = key.split(separator: "{", maxSplits: 1).first.map(String.init) ?? key
            return base == name && labels.allSatisfy { key.contains($0) }
        }.values.reduce(0, +)
    }

    /// Waits up to `timeout` for `path` to answer `status`; returns the last reply.
    static func wait(port: Int, path: String, status: Int, timeout: Duration = .seconds(10)) async throws -> Reply {
        let deadline = ContinuousClock.now + timeout
        var last: Reply?
        while ContinuousClock.now < deadline {
            last = try? get(port: port, path: path)
            if last?.status == status { return last! }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError("\(path) on port \(port) did not answer \(status) within \(timeout); last: \(String(describing: last))")
    }
}
