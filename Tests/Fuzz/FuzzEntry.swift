// libFuzzer entry for the datagram and inner-packet decoders; built by
// scripts/fuzz.sh together with FuzzChecks.swift and the codec sources.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let broken = FuzzChecks.check(Array(UnsafeBufferPointer(start: data, count: size))) {
        fatalError(broken)
    }
    return 0
}
