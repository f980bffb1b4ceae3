#if canImport(Glibc)
import Glibc
#endif

/// The entry point every fuzz target shares.
///
/// Built by `scripts/fuzz.sh` (`-sanitize=fuzzer -DFUZZING`), it hands the target to
/// libFuzzer's driver, which takes libFuzzer's own options (`-max_total_time=...`).
/// Built normally (`swift build`), the same executable replays files instead: every
/// argument is a file or a folder of files (a corpus, or a crash to reproduce), each run
/// once through the target. So the targets keep compiling with the rest of the package
/// and a crash found by the fuzzer can be rerun under a debugger without libFuzzer.
public enum FuzzMain {
    /// Runs `target` as libFuzzer's test function (fuzzing build) or over the files
    /// named on the command line (normal build). Never returns.
    public static func run(_ target: @escaping @Sendable (UnsafeRawBufferPointer) -> Void) -> Never {
        FuzzTarget.current = target
        #if FUZZING
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, { data, size in fuzzOneInput(data, size) }))
        #else
        exit(replay(Array(CommandLine.arguments.dropFirst()), target))
        #endif
    }

    /// Runs every file under `paths` through `target`; the exit status (0, or 2 when a
    /// path cannot be read: a corpus that vanished is an error, not a silent pass).
    static func replay(_ paths: [String], _ target: (UnsafeRawBufferPointer) -> Void) -> Int32 {
        guard !paths.isEmpty else {
            print("usage: \(CommandLine.arguments.first ?? "fuzz-target") FILE_OR_FOLDER...  (replays inputs; scripts/fuzz.sh fuzzes)")
            return 2
        }
        var count = 0
        for path in paths {
            guard let files = Files.list(path) else {
                print("cannot read \(path)")
                return 2
            }
            for file in files {
                guard let bytes = Files.read(file) else {
                    print("cannot read \(file)")
                    return 2
                }
                bytes.withUnsafeBytes { target($0) }
                count += 1
            }
        }
        print("replayed \(count) inputs, no crash")
        return 0
    }
}

/// The target libFuzzer calls; set once, before the driver starts.
enum FuzzTarget {
    nonisolated(unsafe) static var current: (@Sendable (UnsafeRawBufferPointer) -> Void)?
}

/// libFuzzer's test function, exported under the name libFuzzer looks for.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTarget.current?(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}

#if FUZZING
/// libFuzzer's driver, for programs that have their own `main` (SwiftPM gives every
/// executable one, so libFuzzer's `main` cannot be used).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt
#endif

/// Reading the corpus without Foundation.
enum Files {
    /// `path` itself when it is a file, its files (sorted, hidden ones left out) when a folder.
    static func list(_ path: String) -> [String]? {
        guard let dir = opendir(path) else { return access(path, R_OK) == 0 ? [path] : nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if !name.hasPrefix(".") { names.append(path + "/" + name) }
        }
        return names.sorted()
    }

    static func read(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            bytes.append(contentsOf: chunk[0..<n])
            if n < chunk.count { return ferror(file) == 0 ? bytes : nil }
        }
    }
}
