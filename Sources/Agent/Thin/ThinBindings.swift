/// Which live monitor connection each thin disk is bound to. A disk names its VM (name or
/// UUID); it is bound only while exactly one live VM answers to that. Two running VMs
/// with one UUID (a clone) or one name would both claim the disk, and extending the
/// device for the wrong one, or for both, is worse than waiting: the disk is then bound
/// to neither and reported until one of them is gone.
struct ThinBindings {
    struct Claim: Equatable {
        var socket: String
        var name: String
        var uuid: String
    }

    /// What a disk must be told.
    enum Change: Equatable {
        case unbind(connection: Int)
        case bind(connection: Int, Claim)
        /// Several live VMs claim the disk's VM: their sockets, sorted; none when that ended.
        case contested(sockets: [String])
    }

    private let vms: [String]  // each disk's `vm`
    private var claims: [Int: Claim] = [:]
    private(set) var owner: [Int?]
    private var contested: [[String]?]

    init(vms: [String]) {
        self.vms = vms
        owner = Array(repeating: nil, count: vms.count)
        contested = Array(repeating: nil, count: vms.count)
    }

    /// A connection's VM said who it is (again, when learned late); returns each disk's changes.
    mutating func connected(_ connection: Int, _ claim: Claim) -> [Int: [Change]] {
        claims[connection] = claim
        return rebind(refresh: connection)
    }

    mutating func disconnected(_ connection: Int) -> [Int: [Change]] {
        guard claims.removeValue(forKey: connection) != nil else { return [:] }
        return rebind(refresh: nil)
    }

    /// The disks bound to a connection.
    func disks(of connection: Int) -> [Int] {
        owner.indices.filter { owner[$0] == connection }
    }

    private func claimants(of disk: Int) -> [Int] {
        let vm = vms[disk]
        return claims.filter { $0.value.name == vm || (!$0.value.uuid.isEmpty && $0.value.uuid == vm) }.keys.sorted()
    }

    /// Binds each disk to its one claimant; `refresh` is told again even if it was bound
    /// already (its identity may have changed).
    private mutating func rebind(refresh: Int?) -> [Int: [Change]] {
        var changes: [Int: [Change]] = [:]
        for disk in vms.indices {
            let all = claimants(of: disk)
            let want = all.count == 1 ? all[0] : nil
            let have = owner[disk]
            if let have, have != want { changes[disk, default: []].append(.unbind(connection: have)) }
            if let want, want != have || want == refresh, let claim = claims[want] {
                changes[disk, default: []].append(.bind(connection: want, claim))
            }
            owner[disk] = want
            let sockets = all.count > 1 ? all.compactMap { claims[$0]?.socket }.sorted() : nil
            if sockets != contested[disk] { changes[disk, default: []].append(.contested(sockets: sockets ?? [])) }
            contested[disk] = sockets
        }
        return changes
    }
}
