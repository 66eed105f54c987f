// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {InsuranceFund} from "./InsuranceFund.sol";
import {Vault} from "./Vault.sol";
import {IClearingHouseStatus} from "./interfaces/IClearingHouseStatus.sol";
import {SumTree} from "./libraries/SumTree.sol";

/// @title ClearingHouse
/// @notice Accepts the operator's state batches, proving solvency on chain at every batch, and runs the
///         escape hatch when the operator goes silent.
/// @dev Per listed token the ClearingHouse keeps a ledger of what left the accounts' pool (`debits`:
///      batch withdrawals, movements to the insurance fund, escape exits) and what entered it from the
///      fund (`credits`). The accounts' holdings after a batch are
///          holdings(token) = vault.cumulativeDeposits(token, lastCreditedDepositId) + credits - debits
///      and a batch is accepted only if, for every token, the total its sum tree commits to equals them.
///      Invariants:
///       - batch ids are 1, 2, 3, ...; each batch names the hash of the previous one (genesis: 0);
///       - withdrawal ids are 1, 2, 3, ... across batches: each withdrawal is paid exactly once;
///       - the vault's balance of a token >= holdings + pending payouts + uncredited deposits;
///       - once frozen, no batch is accepted and each (account, token) leaf of the last root exits once.
///      Batch hash (what the next batch must name as `prevBatchHash`):
///          keccak256(abi.encode(BATCH_DOMAIN, chainid, clearingHouse, batchId, prevBatchHash, stateRoot,
///              keccak256(data), lastCreditedDepositId,
///              keccak256(abi.encode(keccak256(abi.encode(withdrawals)), keccak256(abi.encode(insuranceMoves))))))
///      State root (the `root` of `BatchAccepted`): keccak256(abi.encode(assets)), one
///      (token, sumTreeRoot, total) per listed token in listing order.
contract ClearingHouse is AccessControl, Pausable, ReentrancyGuardTransient, IClearingHouseStatus {
    /// @notice The per-asset commitment of a batch: the asset's sum tree root and its total.
    struct AssetCommitment {
        address token;
        bytes32 root;
        uint256 total;
    }

    /// @notice A withdrawal the engine approved; `id` continues the global withdrawal sequence.
    struct Withdrawal {
        uint64 id;
        address account;
        address token;
        uint256 amount;
    }

    /// @notice An insurance-fund movement: amount > 0 moves vault -> fund (fees, liquidation surplus),
    ///         amount < 0 moves fund -> vault (covering bankrupt accounts).
    struct InsuranceMove {
        address token;
        int256 amount;
    }

    /// @notice One state batch.
    struct Batch {
        uint64 batchId;
        bytes32 prevBatchHash;
        uint48 lastCreditedDepositId;
        AssetCommitment[] assets;
        Withdrawal[] withdrawals;
        InsuranceMove[] insuranceMoves;
        bytes data;
    }

    /// @notice The packed hot state (one storage slot).
    struct Head {
        uint64 lastBatchId;
        uint64 lastBatchAt;
        uint48 lastCreditedDepositId;
        uint64 lastWithdrawalId;
        bool frozen;
    }

    /// @notice Per-token ledger of the accounts' pool (see contract doc).
    struct Ledger {
        uint128 debits;
        uint128 credits;
    }

    /// @notice Role of the hot key that submits batches (and does nothing else).
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @notice Role that may pause batches (and nothing else).
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    /// @notice Domain tag of batch hashes.
    bytes32 public constant BATCH_DOMAIN = keccak256("hx.ClearingHouse.batch.v1");

    /// @notice The custody contract.
    Vault public immutable vault;
    /// @notice The insurance fund.
    InsuranceFund public immutable insuranceFund;
    /// @notice Seconds without an accepted batch after which anyone may freeze.
    uint256 public immutable freezePeriod;

    Head private _head;
    /// @notice Hash of the last accepted batch (0 before the first).
    bytes32 public lastBatchHash;
    /// @notice State root of the last accepted batch (0 before the first).
    bytes32 public lastStateRoot;
    mapping(address token => Ledger) private _ledger;
    /// @notice Whether `account` has exited `token` through the escape hatch.
    mapping(address account => mapping(address token => bool)) public escaped;
    /// @notice Sum of escape-hatch exits per token.
    mapping(address token => uint256) public escapedTotal;
    /// @notice Whether an uncredited deposit was reclaimed after the freeze.
    mapping(uint256 depositId => bool) public reclaimed;

    /// @notice Batch `batchId` was accepted.
    event BatchAccepted(uint64 indexed batchId, bytes32 batchHash, bytes32 stateRoot);
    /// @notice Withdrawal `withdrawalId` of batch `batchId` was paid (or made claimable in the vault).
    event WithdrawalPaid(
        uint64 indexed batchId,
        uint64 indexed withdrawalId,
        address indexed account,
        address token,
        uint256 amount
    );
    /// @notice The exchange was frozen; exits are against `stateRoot` of batch `batchId`.
    event Frozen(uint64 indexed batchId, bytes32 stateRoot, address by);
    /// @notice `account` exited `amount` of `token` by sum-tree proof.
    event EscapeWithdrawal(address indexed account, address indexed token, uint256 amount, address to);
    /// @notice `account` reclaimed deposit `depositId`, which no batch had credited before the freeze.
    event DepositReclaimed(uint48 indexed depositId, address indexed account, address token, uint256 amount);

    /// @notice A zero address where one is not allowed.
    error ZeroAddress();
    /// @notice Vault and fund must point back at this contract, and the fund at the vault.
    error NotWired();
    /// @notice freezePeriod must be > 0.
    error ZeroFreezePeriod();
    /// @notice The timelock's minimum delay must exceed the freeze period.
    error DelayNotAboveFreezePeriod(uint256 minDelay, uint256 freezePeriod);
    /// @notice The exchange is frozen.
    error ExchangeFrozen();
    /// @notice The exchange is not frozen.
    error ExchangeNotFrozen();
    /// @notice Batch id is not exactly the next one (gapped or replayed).
    error BatchIdNotNext(uint64 expected, uint64 got);
    /// @notice The batch does not name the last accepted batch's hash.
    error PrevBatchHashMismatch(bytes32 expected, bytes32 got);
    /// @notice lastCreditedDepositId went backwards.
    error DepositIdRegressed(uint48 last, uint48 got);
    /// @notice lastCreditedDepositId names a deposit that does not exist yet.
    error DepositNotMade(uint48 depositCount, uint48 got);
    /// @notice The batch's assets are not exactly the listed tokens in listing order.
    error AssetListMismatch();
    /// @notice `token` is not listed.
    error TokenNotListed(address token);
    /// @notice A zero amount where one is not allowed.
    error ZeroAmount();
    /// @notice Withdrawal id is not exactly the next one.
    error WithdrawalIdNotNext(uint64 expected, uint64 got);
    /// @notice A withdrawal exceeds the accounts' holdings of its token.
    error WithdrawalExceedsHoldings(uint64 withdrawalId, uint256 amount, uint256 holdings);
    /// @notice A movement to the insurance fund exceeds the accounts' holdings of its token.
    error InsuranceMoveExceedsHoldings(address token, uint256 amount, uint256 holdings);
    /// @notice Solvency: the committed total differs from the accounts' holdings in the vault.
    error TotalMismatch(address token, uint256 committed, uint256 holdings);
    /// @notice The exchange is not stale yet: freeze possible from `freezableAt`.
    error NotStale(uint256 freezableAt);
    /// @notice The asset list does not hash to the last state root.
    error StateRootMismatch(bytes32 expected, bytes32 got);
    /// @notice No asset at this index.
    error AssetIndexOutOfRange(uint256 index);
    /// @notice The sum-tree proof does not verify against the committed root and total.
    error InvalidProof();
    /// @notice The account already exited this token.
    error AlreadyEscaped(address account, address token);
    /// @notice Exits would exceed the committed total (unreachable with a sound tree; defence in depth).
    error EscapeExceedsTotal(address token);
    /// @notice The deposit was credited by a batch: it is in the sum tree.
    error DepositWasCredited(uint48 depositId);
    /// @notice The deposit data does not match the vault's record.
    error DepositMismatch(uint48 depositId);
    /// @notice The deposit was reclaimed already.
    error AlreadyReclaimed(uint48 depositId);

    /// @param vault_ the Vault (whose `clearingHouse` must be this contract)
    /// @param fund_ the InsuranceFund (whose `clearingHouse` must be this contract)
    /// @param governance the TimelockController: admin, unpauses, rotates roles
    /// @param operator the batch-submitting hot key
    /// @param guardian may pause batches
    /// @param freezePeriod_ seconds without a batch before anyone can freeze (< the timelock's min delay)
    constructor(
        Vault vault_,
        InsuranceFund fund_,
        address governance,
        address operator,
        address guardian,
        uint256 freezePeriod_
    ) {
        if (
            address(vault_) == address(0) || address(fund_) == address(0) || governance == address(0)
                || operator == address(0) || guardian == address(0)
        ) revert ZeroAddress();
        if (
            vault_.clearingHouse() != address(this) || fund_.clearingHouse() != address(this)
                || fund_.vault() != address(vault_)
        ) revert NotWired();
        if (freezePeriod_ == 0) revert ZeroFreezePeriod();
        uint256 minDelay = TimelockController(payable(governance)).getMinDelay();
        if (minDelay <= freezePeriod_) revert DelayNotAboveFreezePeriod(minDelay, freezePeriod_);
        vault = vault_;
        insuranceFund = fund_;
        freezePeriod = freezePeriod_;
        _head.lastBatchAt = uint64(block.timestamp);
        _grantRole(DEFAULT_ADMIN_ROLE, governance);
        _grantRole(OPERATOR_ROLE, operator);
        _grantRole(GUARDIAN_ROLE, guardian);
    }

    // ------------------------------------------------------------------ batches

    /// @notice Accept the next state batch: check the hash chain, apply insurance movements and
    ///         withdrawals, and prove per asset that the committed total equals the accounts' holdings.
    /// @param b the batch (see `Batch`); `b.data` is the published batch data, hashed into the batch hash
    /// @return batchHash the hash the next batch must name
    function submitBatch(Batch calldata b)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
        nonReentrant
        returns (bytes32 batchHash)
    {
        Head memory h = _head;
        if (h.frozen) revert ExchangeFrozen();
        if (b.batchId != h.lastBatchId + 1) revert BatchIdNotNext(h.lastBatchId + 1, b.batchId);
        if (b.prevBatchHash != lastBatchHash) revert PrevBatchHashMismatch(lastBatchHash, b.prevBatchHash);
        uint48 d = b.lastCreditedDepositId;
        if (d < h.lastCreditedDepositId) revert DepositIdRegressed(h.lastCreditedDepositId, d);
        uint48 count = vault.depositCount();
        if (d > count) revert DepositNotMade(count, d);

        // Holdings per asset before this batch's effects, with deposits credited up to `d`.
        address[] memory tokens = vault.listedTokens();
        uint256 n = tokens.length;
        if (b.assets.length != n) revert AssetListMismatch();
        uint256[] memory holdings = new uint256[](n);
        Ledger[] memory ledgers = new Ledger[](n);
        for (uint256 i; i < n; ++i) {
            address t = tokens[i];
            if (b.assets[i].token != t) revert AssetListMismatch();
            Ledger memory l = _ledger[t];
            ledgers[i] = l;
            holdings[i] = vault.cumulativeDeposits(t, d) + l.credits - l.debits;
        }

        _applyInsuranceMoves(b.batchId, b.insuranceMoves, tokens, holdings, ledgers);
        h.lastWithdrawalId =
            _applyWithdrawals(b.batchId, h.lastWithdrawalId, b.withdrawals, tokens, holdings, ledgers);

        // On-chain proof of solvency.
        for (uint256 i; i < n; ++i) {
            if (b.assets[i].total != holdings[i]) {
                revert TotalMismatch(tokens[i], b.assets[i].total, holdings[i]);
            }
            _ledger[tokens[i]] = ledgers[i];
        }

        bytes32 stateRoot = keccak256(abi.encode(b.assets));
        batchHash = hashBatch(b, stateRoot);
        h.lastBatchId = b.batchId;
        h.lastBatchAt = uint64(block.timestamp);
        h.lastCreditedDepositId = d;
        _head = h;
        lastBatchHash = batchHash;
        lastStateRoot = stateRoot;
        emit BatchAccepted(b.batchId, batchHash, stateRoot);
    }

    /// @notice The hash a batch is chained by (see the contract doc), for the operator and auditors.
    /// @param b the batch
    /// @param stateRoot keccak256(abi.encode(b.assets))
    /// @return the batch hash on this chain and contract
    function hashBatch(Batch calldata b, bytes32 stateRoot) public view returns (bytes32) {
        bytes32 effects = keccak256(
            abi.encode(keccak256(abi.encode(b.withdrawals)), keccak256(abi.encode(b.insuranceMoves)))
        );
        return keccak256(
            abi.encode(
                BATCH_DOMAIN,
                block.chainid,
                address(this),
                b.batchId,
                b.prevBatchHash,
                stateRoot,
                keccak256(b.data),
                b.lastCreditedDepositId,
                effects
            )
        );
    }

    function _applyInsuranceMoves(
        uint64 batchId,
        InsuranceMove[] calldata moves,
        address[] memory tokens,
        uint256[] memory holdings,
        Ledger[] memory ledgers
    ) private {
        for (uint256 j; j < moves.length; ++j) {
            address t = moves[j].token;
            int256 amount = moves[j].amount;
            uint256 i = _indexOf(tokens, t);
            if (amount == 0) revert ZeroAmount();
            if (amount > 0) {
                uint256 a = uint256(amount);
                if (a > holdings[i]) revert InsuranceMoveExceedsHoldings(t, a, holdings[i]);
                holdings[i] -= a;
                ledgers[i].debits += SafeCast.toUint128(a);
                vault.transferOut(t, address(insuranceFund), a);
                insuranceFund.recordInflow(batchId, t, a);
            } else {
                uint256 a = uint256(-amount);
                holdings[i] += a;
                ledgers[i].credits += SafeCast.toUint128(a);
                insuranceFund.payToVault(batchId, t, a);
            }
        }
    }

    function _applyWithdrawals(
        uint64 batchId,
        uint64 lastId,
        Withdrawal[] calldata ws,
        address[] memory tokens,
        uint256[] memory holdings,
        Ledger[] memory ledgers
    ) private returns (uint64) {
        for (uint256 j; j < ws.length; ++j) {
            Withdrawal calldata w = ws[j];
            if (w.id != lastId + 1) revert WithdrawalIdNotNext(lastId + 1, w.id);
            lastId = w.id;
            uint256 i = _indexOf(tokens, w.token);
            if (w.account == address(0)) revert ZeroAddress();
            if (w.amount == 0) revert ZeroAmount();
            if (w.amount > holdings[i]) revert WithdrawalExceedsHoldings(w.id, w.amount, holdings[i]);
            holdings[i] -= w.amount;
            ledgers[i].debits += SafeCast.toUint128(w.amount);
            vault.payout(w.account, w.token, w.amount);
            emit WithdrawalPaid(batchId, w.id, w.account, w.token, w.amount);
        }
        return lastId;
    }

    function _indexOf(address[] memory tokens, address t) private pure returns (uint256) {
        for (uint256 i; i < tokens.length; ++i) {
            if (tokens[i] == t) return i;
        }
        revert TokenNotListed(t);
    }

    // ------------------------------------------------------------------ guardian / governance

    /// @notice Stop batches. Never stops freeze, escape exits, reclaims or claims.
    function pause() external onlyRole(GUARDIAN_ROLE) {
        _pause();
    }

    /// @notice Resume batches (governance, through the timelock).
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    // ------------------------------------------------------------------ escape hatch

    /// @notice Freeze the exchange once no batch has been accepted for `freezePeriod` seconds. Anyone may.
    function freeze() external {
        Head memory h = _head;
        if (h.frozen) revert ExchangeFrozen();
        uint256 at = uint256(h.lastBatchAt) + freezePeriod;
        if (block.timestamp < at) revert NotStale(at);
        _head.frozen = true;
        emit Frozen(h.lastBatchId, lastStateRoot, msg.sender);
    }

    /// @notice Exit the caller's leaf of one asset of the last accepted state, by sum-tree proof.
    /// @param assets the last batch's asset commitments (they must hash to `lastStateRoot`)
    /// @param assetIndex which asset to exit
    /// @param amount the caller's leaf amount
    /// @param leafIndex the leaf's position in the asset's tree
    /// @param proof sibling (hash, sum) pairs from the leaf up
    /// @param to the recipient
    function escapeWithdraw(
        AssetCommitment[] calldata assets,
        uint256 assetIndex,
        uint256 amount,
        uint256 leafIndex,
        SumTree.Node[] calldata proof,
        address to
    ) external nonReentrant {
        if (!_head.frozen) revert ExchangeNotFrozen();
        if (to == address(0)) revert ZeroAddress();
        bytes32 root = keccak256(abi.encode(assets));
        if (root != lastStateRoot) revert StateRootMismatch(lastStateRoot, root);
        if (assetIndex >= assets.length) revert AssetIndexOutOfRange(assetIndex);
        AssetCommitment calldata a = assets[assetIndex];
        address token = a.token;
        if (escaped[msg.sender][token]) revert AlreadyEscaped(msg.sender, token);
        if (!SumTree.verify(a.root, a.total, msg.sender, token, amount, leafIndex, proof)) {
            revert InvalidProof();
        }
        uint256 out = escapedTotal[token] + amount;
        if (out > a.total) revert EscapeExceedsTotal(token);
        escaped[msg.sender][token] = true;
        escapedTotal[token] = out;
        _ledger[token].debits += SafeCast.toUint128(amount);
        if (amount != 0) vault.transferOut(token, to, amount);
        emit EscapeWithdrawal(msg.sender, token, amount, to);
    }

    /// @notice After a freeze, take back a deposit that no batch had credited (it is in no sum tree).
    /// @param depositId the deposit id (> lastCreditedDepositId)
    /// @param token the deposited token
    /// @param amount the deposited amount
    /// @param to the recipient
    function reclaimDeposit(uint48 depositId, address token, uint256 amount, address to)
        external
        nonReentrant
    {
        if (!_head.frozen) revert ExchangeNotFrozen();
        if (to == address(0)) revert ZeroAddress();
        if (depositId <= _head.lastCreditedDepositId) revert DepositWasCredited(depositId);
        if (vault.depositHash(depositId) != keccak256(abi.encode(msg.sender, token, amount))) {
            revert DepositMismatch(depositId);
        }
        if (reclaimed[depositId]) revert AlreadyReclaimed(depositId);
        reclaimed[depositId] = true;
        vault.transferOut(token, to, amount);
        emit DepositReclaimed(depositId, msg.sender, token, amount);
    }

    // ------------------------------------------------------------------ views

    /// @notice True once the escape hatch is open.
    /// @return whether frozen
    function frozen() external view returns (bool) {
        return _head.frozen;
    }

    /// @notice Id of the last accepted batch (0 before the first).
    /// @return the id
    function lastBatchId() external view returns (uint64) {
        return _head.lastBatchId;
    }

    /// @notice Timestamp of the last accepted batch (deployment time before the first).
    /// @return seconds since the epoch
    function lastBatchAt() external view returns (uint64) {
        return _head.lastBatchAt;
    }

    /// @notice Last deposit id credited by an accepted batch.
    /// @return the deposit id
    function lastCreditedDepositId() external view returns (uint48) {
        return _head.lastCreditedDepositId;
    }

    /// @notice Last withdrawal id paid by an accepted batch.
    /// @return the withdrawal id
    function lastWithdrawalId() external view returns (uint64) {
        return _head.lastWithdrawalId;
    }

    /// @notice The accounts' holdings of `token` right now: credited deposits + fund inflows - withdrawals
    ///         - movements to the fund - escape exits. Equals the last committed total until the next batch
    ///         (minus exits after a freeze).
    /// @param token a listed token
    /// @return the amount the vault holds for accounts
    function accountHoldings(address token) external view returns (uint256) {
        Ledger memory l = _ledger[token];
        return vault.cumulativeDeposits(token, _head.lastCreditedDepositId) + l.credits - l.debits;
    }

    /// @notice Check a sum-tree proof against an explicit root and total (for users and auditors).
    /// @param root the asset's sum-tree root
    /// @param total the committed total
    /// @param account the leaf's account
    /// @param token the leaf's token
    /// @param amount the leaf's amount
    /// @param leafIndex the leaf's position
    /// @param proof sibling (hash, sum) pairs from the leaf up
    /// @return whether the proof verifies
    function verifyLeaf(
        bytes32 root,
        uint256 total,
        address account,
        address token,
        uint256 amount,
        uint256 leafIndex,
        SumTree.Node[] calldata proof
    ) external pure returns (bool) {
        return SumTree.verify(root, total, account, token, amount, leafIndex, proof);
    }
}
