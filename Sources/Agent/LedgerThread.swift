import Glibc
import Synchronization

/// A thread of its own for the ledger writer, as the executor of `LedgerKeeper`.
///
/// GRDB's calls are synchronous: opening the ledger waits up to 5 s for a lock held by
/// another process, a write waits for the disk. On one of Swift's cooperative threads
/// (one per core) such a wait stalls every task scheduled there: the sampler's passes,
/// the HTTP API. Every job of the keeper (accounting and every SQLite call) runs on this
/// thread instead, one at a time, in order. The thread lives as long as the process.
final class LedgerThread: SerialExecutor, @unchecked Sendable {
    /// The name the thread carries (`ps -L`, `top -H`; at most 15 characters).
    static let name = "vmpulse-ledger"

    private let jobs = Mutex<[UnownedJob]>([])
    /// Counts the jobs waiting in `jobs`.
    private let ready: UnsafeMutablePointer<sem_t>

    /// - Parameter spawn: false runs the jobs as if no thread could be had (for tests).
    init(spawn: Bool = true) {
        ready = .allocate(capacity: 1)
        sem_init(ready, 0, 0)
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let started = !spawn ? EAGAIN : pthread_create(&thread, nil, { context in
            guard let context else { return nil }
            Unmanaged<LedgerThread>.fromOpaque(context).takeRetainedValue().loop()
        }, context)
        if started == 0 {
            pthread_detach(thread)
        } else {
            // No thread to be had (the process is at its limit): the jobs run on the
            // enqueuing thread instead, which is what the keeper did before it had one.
            Unmanaged<LedgerThread>.fromOpaque(context).release()
            inline.store(true, ordering: .relaxed)
        }
    }

    private let inline = Atomic<Bool>(false)

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if inline.load(ordering: .relaxed) {
            jobs.withLock { $0.append(job) }
            drainInline()
            return
        }
        jobs.withLock { $0.append(job) }
        sem_post(ready)
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// The thread's id, once it runs.
    private let threadID = Mutex<pthread_t?>(nil)

    /// Whether the calling code runs on the ledger thread (for tests and checks).
    var isCurrent: Bool {
        threadID.withLock { id in id.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    private func loop() -> Never {
        threadID.withLock { $0 = pthread_self() }
        // Named for `ps -L` and `top -H` (best effort: pthread_setname_np is not in Glibc's Swift module).
        let fd = open("/proc/thread-self/comm", O_WRONLY)
        if fd >= 0 {
            _ = Self.name.withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        while true {
            while sem_wait(ready) != 0 {}  // EINTR
            guard let job = jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { continue }
            job.runSynchronously(on: asUnownedSerialExecutor())
        }
    }

    /// Without a thread: one job at a time, in order, on whichever thread holds the turn.
    private let draining = Atomic<Bool>(false)
    private func drainInline() {
        while draining.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            while let job = jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
                job.runSynchronously(on: asUnownedSerialExecutor())
            }
            draining.store(false, ordering: .releasing)
            if jobs.withLock({ $0.isEmpty }) { return }
        }
    }
}
