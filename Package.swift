// swift-tools-version:6.1
import PackageDescription

/// What every server program is built on: the wire, the messages and the
/// plane between the programs, how a program runs, its logs and metrics,
/// and its command line.
let serverProgram: [Target.Dependency] = [
    "ChatWire",
    "IPCMessages",
    "IPC",
    "Ops",
    "ChatLog",
    .product(name: "Metrics", package: "swift-metrics"),
    .product(name: "ArgumentParser", package: "swift-argument-parser"),
]

// The WebSocket bridge and the web page: browsers reach the edge
// through it, one UDP socket per WebSocket.
let webBridge: Target = .executableTarget(
    name: "udpchat-web",
    dependencies: [
        "ChatWire",
        "Ops",
        "ChatLog",
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "HummingbirdCore", package: "hummingbird"),
        .product(name: "HummingbirdTLS", package: "hummingbird"),
        .product(name: "HTTPTypes", package: "swift-http-types"),
        .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "NIOWebSocket", package: "swift-nio"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Logging", package: "swift-log"),
    ],
    // The page is built into the program: nothing to install beside it.
    resources: ["index.html", "style.css", "app.js", "connection.js", "wire.js"].map { .embedInCode("Page/\($0)") }
)

let package = Package(
    name: "udpchat",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "udpchat-edge", targets: ["udpchat-edge"]),
        .executable(name: "udpchat-store", targets: ["udpchat-store"]),
        .executable(name: "udpchat-keys", targets: ["udpchat-keys"]),
        .executable(name: "udpchat-ai", targets: ["udpchat-ai"]),
        .executable(name: "udpchat", targets: ["udpchat"]),
        .executable(name: "udpchat-web", targets: ["udpchat-web"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CLibrary"),
        // The system's OpenSSL (libcrypto), and the handshake's RSA through
        // it: signing in udpchat-keys, the bench client's side.
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .target(name: "OpenSSLRSA", dependencies: ["ChatWire", "CLibCrypto"]),
        // The wire and the session rules: codecs, the v1 wire's crypto, the
        // replay window and limiters. No I/O: neither NIO nor ZeroMQ.
        .target(
            name: "ChatWire",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // The messages the server programs exchange (generated from
        // Protos/) and the error a call ends with. No I/O.
        .target(
            name: "IPCMessages",
            dependencies: ["ChatWire", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // The names of the values log lines carry, one per kind of value.
        .target(name: "ChatLog", dependencies: ["ChatWire", .product(name: "Logging", package: "swift-log")]),
        // How the server programs talk: ZeroMQ sockets and their reactor,
        // RPC client and server, PUB/SUB, job channels, CURVE keys.
        .target(
            name: "IPC",
            dependencies: [
                "ChatWire",
                "ChatLog",
                "IPCMessages",
                "CZeroMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // How a server program runs: settings, the program runner, metrics,
        // health, systemd notification.
        .target(
            name: "Ops",
            dependencies: [
                "ChatWire",
                "ChatLog",
                "IPC",
                "CLibrary",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "udpchat-keys",
            dependencies: serverProgram + ["OpenSSLRSA"]
        ),
        .executableTarget(
            name: "udpchat-store",
            dependencies: serverProgram + [
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "udpchat-edge",
            dependencies: serverProgram + [
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
            ]
        ),
        .executableTarget(
            name: "udpchat-ai",
            dependencies: serverProgram + [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        webBridge,
        .target(
            name: "ChatClient",
            dependencies: [
                "ChatWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "udpchat",
            dependencies: [
                "ChatWire",
                "ChatClient",
                "OpenSSLRSA",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // What several test targets share; no program links it.
        .target(name: "TestSupport", dependencies: ["ChatWire"], path: "Tests/Support"),
        .testTarget(name: "ChatWireTests", dependencies: ["ChatWire", "TestSupport"]),
        .testTarget(name: "IPCTests", dependencies: ["ChatWire", "IPCMessages", "IPC"]),
        .testTarget(name: "OpsTests", dependencies: ["ChatWire", "IPC", "Ops"]),
        .testTarget(name: "StoreTests", dependencies: ["udpchat-store", "ChatWire", "IPCMessages", "IPC", "Ops", "TestSupport"]),
        .testTarget(name: "EdgeTests", dependencies: ["udpchat-edge", "ChatWire", "IPCMessages", "IPC", "Ops"]),
        .testTarget(name: "WebTests", dependencies: ["udpchat-web", "ChatWire", "Ops"]),
        .testTarget(name: "AITests", dependencies: ["udpchat-ai", "ChatWire", "IPCMessages", "IPC", "Ops", "TestSupport"]),
        .testTarget(
            name: "KeysTests",
            dependencies: [
                "udpchat-keys", "ChatWire", "IPCMessages", "Ops", "OpenSSLRSA",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "ChatWire", "IPCMessages", "IPC", "Ops", "ChatClient", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                // A WebSocket client: for udpchat-web, and for the browser's DevTools.
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
