// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {EscapeHatch} from "./EscapeHatch.sol";
import {InsuranceFund} from "./InsuranceFund.sol";
import {PriceBounds} from "./PriceBounds.sol";
import {Vault} from "./Vault.sol";
import {HxTimelock} from "./governance/HxTimelock.sol";
import {IClearingHouseStatus} from "./interfaces/IClearingHouseStatus.sol";
import {SumTree} from "./libraries/SumTree.sol";
import {Valuation} from "./libraries/Valuation.sol";
import {ExpiringPause} from "./utils/ExpiringPause.sol";

/// @title ClearingHouse
/// @notice Accepts the operator's state batches with an on-chain proof of solvency, pays only what accounts signed
///         for after a dispute window and under outflow caps, serves forced withdrawals, and runs the escape hatch.
/// @dev Trust model: the operator key is hot. Stolen, it can delay, never steal: every payout needs the account's
///      EIP-712 signature (or ERC-1271 approval, or its own on-chain forced request), pays after `disputeWindow`
///      during which the guardian or a watcher can void the batch (and all after it), and drains at most
///      `outflowCap[token]` per `outflowPeriod`. Escapes use only the last batch whose window has passed.
///      Prices (which value basket escapes): listed token 0, the numeraire, is pinned at 10^6; a token with a price
///      feed (set by governance) is held within its deviation of the fresh feed, or to its last price while the feed
///      is not usable (`PriceBounds`); a token without a feed is bounded by nothing but (0, 1e36] (audit A-1).
///
///      Per listed token the ClearingHouse keeps a ledger of cumulative amounts along the canonical chain
///          credited = deposits credited, fundIn = insurance fund -> vault, queued = payouts queued
///      (restorable: a rollback puts back the ledger of the batch it returns to), plus `executed` (payouts paid)
///      and the Vault's `reclaimedTotal` (uncredited deposits taken back), which only grow. Invariants:
///       - holdings(token) = credited + fundIn - queued, and every accepted batch proves per asset
///             claimsTotal - liabilitiesTotal == holdings                       (solvency against the books)
///             vault balance >= holdings + (queued - executed) + uncredited deposits + deferred payouts
///                                                                              (the books against the tokens)
///       - batch ids are 1, 2, 3, ... on the canonical chain; each names the hash of the previous one (genesis 0);
///         a challenge removes a non-final batch and every batch after it; a final batch is never removed;
///       - a payout executes only from a canonical final batch, once, in the batch's order;
///       - a nonce of an account is consumed at most once (bitmap), also by a batch later voided;
///       - once frozen, no batch is accepted; each account exits once, against the escape batch's state.
///
///      Batch hash (what the next batch names as `prevBatchHash`):
///          keccak256(abi.encode(BATCH_DOMAIN, chainid, clearingHouse, batchId, prevBatchHash, stateRoot,
///              keccak256(data), lastCreditedDepositId, depositAccumulator, payoutsHash,
///              keccak256(abi.encode(insuranceMoves))))
///      State root: keccak256(abi.encode(AssetState[])), one entry per listed token in listing order.
///      Payouts hash: h_0 = 0, h_k = keccak256(abi.encode(h_{k-1}, payout_k)) over the payouts it queued.
///      Checkpoint: keccak256(abi.encode(batchHash, Ledger[])) with the ledger after the batch (emitted in
///      `BatchAccepted`); a challenger or an auditor presents it to restore or check that state.
contract ClearingHouse is
    AccessControl,
    EIP712,
    ExpiringPause,
    ReentrancyGuardTransient,
    IClearingHouseStatus
{
    // ------------------------------------------------------------------ types

    /// @notice Per asset: the claims and liabilities sum trees, and the price the batch valued the asset at.
    struct AssetState {
        address token;
        bytes32 claimsRoot;
        uint256 claimsTotal;
        bytes32 liabilitiesRoot;
        uint256 liabilitiesTotal;
        uint256 price; // micro-USDC per whole unit (10^decimals base units)
    }

    /// @notice A deposit as the Vault recorded it (its id is implied by its position in the batch).
    struct DepositRecord {
        address account;
        address token;
        uint256 amount;
        uint64 depositedAt;
    }

    /// @notice A withdrawal the account signed (EIP-712 `Withdrawal`, or ERC-1271 for a smart account).
    struct SignedWithdrawal {
        address account;
        address token;
        uint256 amount;
        address destination;
        uint256 nonce;
        uint256 expiry;
        bytes signature;
    }

    /// @notice The operator's answer to a forced withdrawal request: pay `amount` (== the request), or less with a
    ///         proof that the account's claim leaf of the token is 0 in this batch (it had less than it asked).
    struct ForcedServe {
        uint256 requestId;
        uint256 amount;
        uint256 leafIndex;
        SumTree.Node[] proof;
    }

    /// @notice amount > 0 moves vault -> fund (queued like a payout, not capped); amount < 0 moves fund -> vault
    ///         (at once, covering bankrupt accounts).
    struct InsuranceMove {
        address token;
        int256 amount;
    }

    /// @notice One state batch.
    struct Batch {
        uint64 batchId;
        bytes32 prevBatchHash;
        uint48 lastCreditedDepositId;
        DepositRecord[] deposits; // ids previous lastCreditedDepositId + 1 .. lastCreditedDepositId, in order
        AssetState[] assets; // one per listed token, in listing order
        SignedWithdrawal[] withdrawals;
        ForcedServe[] forcedServes;
        InsuranceMove[] insuranceMoves;
        bytes data; // the published data (docs/contracts.md): rebuilds every leaf from the previous state
    }

    /// @notice A queued outflow: kind WITHDRAWAL (ref = nonce), FORCED (ref = request id), TO_FUND (ref = 0).
    struct Payout {
        uint8 kind;
        address account;
        address token;
        uint256 amount;
        address destination;
        uint256 ref;
    }

    /// @notice Cumulative per-token amounts along the canonical chain (restored by a rollback).
    struct Ledger {
        uint256 credited;
        uint256 fundIn;
        uint256 queued;
    }

    /// @notice What the ClearingHouse keeps per accepted batch.
    struct BatchRecord {
        bytes32 stateRoot;
        bytes32 checkpoint;
        bytes32 payoutsHash;
        uint64 acceptedAt;
        uint64 seq;
        uint48 lastCreditedDepositId;
        uint32 payoutsDone;
    }

    /// @notice The periods, in seconds (see docs/contracts.md for the defaults and why).
    /// @notice A price feed the constructor sets (`PriceBounds.setPriceFeed`'s arguments): a deployment bounds its
    ///         tokens' prices from its first batch on, not a timelock delay later (audit A-1's residual).
    struct InitialPriceFeed {
        address token;
        address feed;
        uint32 maxDeviationPpm;
        uint32 maxAgeSeconds;
    }

    struct Config {
        uint256 freezePeriod;
        uint256 disputeWindow;
        uint256 forcedWithdrawalPeriod;
        uint256 depositCreditPeriod;
        uint256 outflowPeriod;
        uint256 maxPause;
    }

    struct Head {
        uint64 lastBatchId;
        uint64 lastBatchAt;
        uint48 lastCreditedDepositId;
        uint64 seq;
        bool frozen;
    }

    struct OutflowWindow {
        uint64 period;
        uint256 spent;
    }

    /// @dev Scratch state of one submitBatch.
    struct Ctx {
        address[] tokens;
        Ledger[] ledgers;
        bytes32 payoutsHash;
        uint256 np;
        uint64 batchId;
        uint64 seq;
    }

    // ------------------------------------------------------------------ constants and immutables

    /// @notice Role of the hot key that submits batches (and does nothing else).
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @notice Role that may pause (expiring), challenge non-final batches and remove watchers.
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    /// @notice Role that may challenge non-final batches (granted by governance).
    bytes32 public constant WATCHER_ROLE = keccak256("WATCHER_ROLE");
    /// @notice Domain tag of batch hashes.
    bytes32 public constant BATCH_DOMAIN = keccak256("hx.ClearingHouse.batch.v2");
    /// @notice EIP-712 type of a signed withdrawal.
    bytes32 public constant WITHDRAWAL_TYPEHASH = keccak256(
        "Withdrawal(address account,address token,uint256 amount,address destination,uint256 nonce,uint256 expiry)"
    );
    /// @notice First bytes of the published data: "hxd1".
    bytes4 public constant DATA_MAGIC = 0x68786431;

    uint8 internal constant WITHDRAWAL = 0;
    uint8 internal constant FORCED = 1;
    uint8 internal constant TO_FUND = 2;

    /// @notice The custody contract.
    Vault public immutable vault;
    /// @notice The insurance fund.
    InsuranceFund public immutable insuranceFund;
    /// @notice Seconds without an accepted batch after which anyone may freeze.
    uint256 public immutable freezePeriod;
    /// @notice Seconds after acceptance during which a batch can be challenged and its payouts wait.
    uint256 public immutable disputeWindow;
    /// @notice Seconds within which a forced withdrawal request must be paid, or anyone may freeze.
    uint256 public immutable forcedWithdrawalPeriod;
    /// @notice Seconds after which an uncredited deposit can be reclaimed by its depositor (in the Vault).
    uint256 public immutable depositCreditPeriod;
    /// @notice Forced withdrawal requests and escape exits (the paths that need nothing from the operator).
    EscapeHatch public immutable escapeHatch;
    /// @notice Length of an outflow-cap period (seconds); periods are aligned to multiples of it.
    uint256 public immutable outflowPeriod;
    /// @notice The price feeds and last committed prices that bound every batch's prices (audit A-1; created here).
    PriceBounds public immutable priceBounds;

    // ------------------------------------------------------------------ state

    Head private _head;
    /// @notice Hash of the last canonical batch (0 before the first).
    bytes32 public lastBatchHash;
    /// @notice The record of batch `batchId` (0: genesis). Canonical only while batchId <= lastBatchId.
    mapping(uint64 batchId => BatchRecord) public batchRecord;
    mapping(address token => Ledger) private _ledger;
    /// @notice Cumulative payouts executed per token (never rolled back: only final batches pay).
    mapping(address token => uint256) public executed;
    /// @notice Per batch: how much of its next unpaid payout (index `payoutsDone`) is paid already. Only a payout
    ///         larger than a whole period's outflow cap is paid in parts (audit A-2); else 0.
    mapping(uint64 batchId => uint256) public payoutPartPaid;
    /// @notice Most a token's payouts may total in one outflow period (set by governance).
    mapping(address token => uint256) public outflowCap;
    mapping(address token => OutflowWindow) private _outflow;
    /// @notice Nonce bitmap: bit (nonce & 255) of word (nonce >> 8) set = nonce used or invalidated.
    mapping(address account => mapping(uint256 word => uint256)) public nonceBitmap;
    /// @notice After a freeze: the batch whose state accounts exit against (0: none).
    uint64 public escapeBatchId;

    // ------------------------------------------------------------------ events

    /// @notice Batch `batchId` was accepted; `ledgers` (listing order) and `batchHash` open its checkpoint.
    event BatchAccepted(
        uint64 indexed batchId, bytes32 batchHash, bytes32 stateRoot, bytes32 payoutsHash, Ledger[] ledgers
    );
    /// @notice Batch `batchId` queued payout `index` (executable once the batch is final).
    event PayoutQueued(uint64 indexed batchId, uint256 index, Payout payout);
    /// @notice `amount` of payout `index` of batch `batchId` was paid (or deferred in the vault for its recipient to
    ///         claim): all of it, or, for a payout larger than a whole period's outflow cap, a part (audit A-2: such a
    ///         payout is paid in parts, one event each; `payoutPartPaid` says how much of it so far).
    event PayoutExecuted(
        uint64 indexed batchId, uint256 index, address indexed account, address token, uint256 amount
    );
    /// @notice `challenger` voided batches `fromBatchId`..`toBatchId`; the chain continues from `fromBatchId - 1`.
    event BatchesRolledBack(uint64 indexed fromBatchId, uint64 toBatchId, address indexed challenger);
    /// @notice The exchange was frozen (`reason` 1: no batch for freezePeriod, 2: forced request `requestId` unpaid);
    ///         exits are against batch `escapeBatchId`.
    event Frozen(
        uint64 indexed escapeBatchId, bytes32 stateRoot, address by, uint8 reason, uint256 requestId
    );
    /// @notice Batch `batchId` served request `requestId` with `amount`.
    event ForcedWithdrawalServed(uint256 indexed requestId, uint64 indexed batchId, uint256 amount);
    /// @notice `account` invalidated the nonces of `word` in `mask`.
    event NoncesInvalidated(address indexed account, uint256 word, uint256 mask);
    /// @notice Governance set `token`'s outflow cap.
    event OutflowCapSet(address indexed token, uint256 cap);
    /// @notice Insurance inflows of voided batches went back to the fund.
    event FundInflowReturned(address indexed token, uint256 amount);

    // ------------------------------------------------------------------ errors

    /// @notice A zero address where one is not allowed.
    error ZeroAddress();
    /// @notice Vault and fund must point back at this contract, and the fund at the vault.
    error NotWired();
    /// @notice A period violates rule `rule`: 1 a period is zero, 2 disputeWindow >= freezePeriod, 3 maxPause >=
    ///         freezePeriod, 4 maxPause != vault.maxPause(), 5 forcedWithdrawalPeriod <= disputeWindow + outflowPeriod +
    ///         maxPause.
    error BadConfig(uint8 rule);
    /// @notice The timelock's delay floor must exceed `needed` (freeze and forced-withdrawal periods).
    error DelayFloorTooLow(uint256 floor, uint256 needed);
    /// @notice One outflow cap per listed token is required.
    error OutflowCapsMismatch();
    /// @notice The exchange is frozen.
    error ExchangeFrozen();
    /// @notice The exchange is not frozen.
    error ExchangeNotFrozen();
    /// @notice Batch id is not exactly the next one (gapped or replayed).
    error BatchIdNotNext(uint64 expected, uint64 got);
    /// @notice The batch does not name the last canonical batch's hash.
    error PrevBatchHashMismatch(bytes32 expected, bytes32 got);
    /// @notice lastCreditedDepositId went backwards.
    error DepositIdRegressed(uint48 last, uint48 got);
    /// @notice lastCreditedDepositId names a deposit that does not exist yet.
    error DepositNotMade(uint48 depositCount, uint48 got);
    /// @notice The batch carries a different number of deposit records than it credits.
    error DepositCountMismatch(uint256 expected, uint256 got);
    /// @notice The deposit records do not hash to the vault's running deposit hash.
    error DepositAccumulatorMismatch(uint48 depositId);
    /// @notice The batch's assets are not exactly the listed tokens in listing order.
    error AssetListMismatch();
    /// @notice A price of 0 or above Valuation.MAX_PRICE.
    error PriceOutOfRange(address token, uint256 price);
    /// @notice From `priceBounds` (declared here for the ABI): the numeraire (listed token 0) must be priced at
    ///         exactly 10^6; a price deviates from the token's fresh feed (`feedPrice` rounded down); the feed is
    ///         not usable and the price is not the last committed one; bad feed bounds.
    error NumerairePriceNotPinned(address token, uint256 price);
    error PriceDeviatesFromFeed(address token, uint256 price, uint256 feedPrice);
    error PriceFeedUnavailable(address token, uint256 price, uint256 committedPrice);
    error BadPriceFeed(address token, uint32 maxDeviationPpm, uint32 maxAgeSeconds);
    /// @notice The claims total cannot be valued in uint256 at the committed price.
    error ValueOverflow(address token);
    /// @notice The published data does not start with the expected header (magic, batch id, asset count).
    error BadPublishedData();
    /// @notice `token` is not listed.
    error TokenNotListed(address token);
    /// @notice A zero amount where one is not allowed.
    error ZeroAmount();
    /// @notice A withdrawal to the zero address.
    error ZeroDestination();
    /// @notice The signed withdrawal expired at `expiry`.
    error WithdrawalExpired(address account, uint256 nonce, uint256 expiry);
    /// @notice The nonce was used (or invalidated) already: a replay.
    error NonceAlreadyUsed(address account, uint256 nonce);
    /// @notice The signature is not the account's (ECDSA) and the account does not approve it (ERC-1271).
    error InvalidSignature(address account, uint256 nonce);
    /// @notice Queued payouts exceed what the accounts hold of `token`.
    error OutflowExceedsHoldings(address token, uint256 queued, uint256 inflow);
    /// @notice Solvency: claims - liabilities differs from the accounts' holdings in the vault.
    error SolvencyMismatch(address token, uint256 claims, uint256 liabilities, uint256 holdings);
    /// @notice The vault holds fewer tokens than the books require (seized, rebased, fee-switched token).
    error VaultBalanceShort(address token, uint256 balance, uint256 required);
    /// @notice A serve below the request without a proof that the account's claim leaf is 0.
    error ForcedShortServeUnproven(uint256 requestId);
    /// @notice The batch is not canonical (voided, not yet made, or the genesis).
    error BatchNotCanonical(uint64 batchId);
    /// @notice The batch's dispute window runs until `finalAt`.
    error BatchNotFinal(uint64 batchId, uint256 finalAt);
    /// @notice The batch is final: it can no longer be challenged.
    error BatchFinal(uint64 batchId);
    /// @notice The payouts list is not the batch's.
    error PayoutsMismatch(uint64 batchId);
    /// @notice No payout left to execute in this batch.
    error NothingToExecute(uint64 batchId);
    /// @notice Paying `amount` would exceed `token`'s cap for this period (`remaining` left; retry next period).
    error OutflowCapExceeded(address token, uint256 amount, uint256 remaining);
    /// @notice Only the EscapeHatch may call this.
    error NotEscapeHatch(address caller);
    /// @notice Only the guardian or a watcher may challenge.
    error NotChallenger(address caller);
    /// @notice The checkpoint preimage (batch hash, ledgers) does not match the stored checkpoint.
    error CheckpointMismatch(uint64 batchId);
    /// @notice The exchange is not stale yet: freeze possible from `freezableAt`.
    error NotStale(uint256 freezableAt);
    /// @notice The named escape batch is past the last canonical batch.
    error EscapeBatchInvalid(uint64 batchId);
    /// @notice The named escape batch is still inside its challenge window (until `finalAt`).
    error EscapeBatchNotFinal(uint64 batchId, uint256 finalAt);
    /// @notice A later batch (`later`) is final: the escape batch must be the last final one.
    error NotLatestFinalBatch(uint64 batchId, uint64 later);

    // ------------------------------------------------------------------ construction

    /// @param vault_ the Vault (whose `clearingHouse` must be this contract)
    /// @param fund_ the InsuranceFund (whose `clearingHouse` must be this contract)
    /// @param governance the HxTimelock: admin (roles, caps, listings); its delay floor must exceed the freeze and
    ///        forced-withdrawal periods
    /// @param operator the batch-submitting hot key
    /// @param guardian pauses (expiring), challenges, removes watchers
    /// @param watchers the initial watchers (may challenge; more are added by governance)
    /// @param config the periods (rules: all > 0; disputeWindow < freezePeriod; maxPause < freezePeriod;
    ///        forcedWithdrawalPeriod > disputeWindow + outflowPeriod + maxPause; maxPause == vault.maxPause())
    /// @param outflowCaps per listed token (listing order), the most its payouts may total per outflow period
    /// @param priceFeeds price feeds set at once (each as `setPriceFeed` would: a listed token but the numeraire)
    constructor(
        Vault vault_,
        InsuranceFund fund_,
        HxTimelock governance,
        address operator,
        address guardian,
        address[] memory watchers,
        Config memory config,
        uint256[] memory outflowCaps,
        InitialPriceFeed[] memory priceFeeds
    ) EIP712("hx ClearingHouse", "2") ExpiringPause(config.maxPause) {
        if (
            address(vault_) == address(0) || address(fund_) == address(0) || address(governance) == address(0)
                || operator == address(0) || guardian == address(0)
        ) revert ZeroAddress();
        if (
            vault_.clearingHouse() != address(this) || fund_.clearingHouse() != address(this)
                || fund_.vault() != address(vault_)
        ) revert NotWired();
        _checkConfig(config, vault_.maxPause());
        uint256 needed = Math.max(config.freezePeriod, config.forcedWithdrawalPeriod);
        uint256 floor = governance.delayFloor();
        if (floor <= needed) revert DelayFloorTooLow(floor, needed);
        address[] memory tokens = vault_.listedTokens();
        if (outflowCaps.length != tokens.length) revert OutflowCapsMismatch();
        vault = vault_;
        insuranceFund = fund_;
        escapeHatch = EscapeHatch(vault_.escapeHatch());
        freezePeriod = config.freezePeriod;
        disputeWindow = config.disputeWindow;
        forcedWithdrawalPeriod = config.forcedWithdrawalPeriod;
        depositCreditPeriod = config.depositCreditPeriod;
        outflowPeriod = config.outflowPeriod;
        priceBounds = new PriceBounds(vault_);
        for (uint256 i; i < priceFeeds.length; ++i) {
            InitialPriceFeed memory f = priceFeeds[i];
            priceBounds.setPriceFeed(f.token, f.feed, f.maxDeviationPpm, f.maxAgeSeconds);
        }
        for (uint256 i; i < tokens.length; ++i) {
            outflowCap[tokens[i]] = outflowCaps[i];
            emit OutflowCapSet(tokens[i], outflowCaps[i]);
        }
        _head.lastBatchAt = uint64(block.timestamp);
        batchRecord[0].acceptedAt = uint64(block.timestamp);
        batchRecord[0].checkpoint = keccak256(abi.encode(bytes32(0), new Ledger[](0)));
        _grantRole(DEFAULT_ADMIN_ROLE, address(governance));
        _grantRole(OPERATOR_ROLE, operator);
        _grantRole(GUARDIAN_ROLE, guardian);
        for (uint256 i; i < watchers.length; ++i) {
            if (watchers[i] == address(0)) revert ZeroAddress();
            _grantRole(WATCHER_ROLE, watchers[i]);
        }
    }

    function _checkConfig(Config memory c, uint256 vaultMaxPause) private pure {
        if (
            c.freezePeriod == 0 || c.disputeWindow == 0 || c.forcedWithdrawalPeriod == 0
                || c.depositCreditPeriod == 0 || c.outflowPeriod == 0
        ) revert BadConfig(1);
        if (c.disputeWindow >= c.freezePeriod) revert BadConfig(2);
        if (c.maxPause >= c.freezePeriod) revert BadConfig(3);
        if (c.maxPause != vaultMaxPause) revert BadConfig(4);
        // a forced request's serve, once final, still has a whole outflow period to be paid in, even after a
        // pause of the longest kind stopped the batches right after the request (audit A-5)
        if (c.forcedWithdrawalPeriod <= c.disputeWindow + c.outflowPeriod + c.maxPause) {
            revert BadConfig(5);
        }
    }

    // ------------------------------------------------------------------ batches

    /// @notice Accept the next state batch: check the hash chain, credit exactly the vault's deposits, verify every
    ///         withdrawal signature and forced serve, queue the payouts, and prove solvency per asset.
    /// @param b the batch (see `Batch`)
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

        Ctx memory c;
        c.batchId = b.batchId;
        c.seq = h.seq + 1;
        c.tokens = vault.listedTokens();
        uint256 n = c.tokens.length;
        if (b.assets.length != n) revert AssetListMismatch();
        _checkData(b.data, b.batchId, n);
        c.ledgers = new Ledger[](n);
        for (uint256 i; i < n; ++i) {
            if (b.assets[i].token != c.tokens[i]) revert AssetListMismatch();
            c.ledgers[i] = _ledger[c.tokens[i]];
        }

        bytes32 depositAcc = _creditDeposits(b, h.lastCreditedDepositId, c);
        _applyInsuranceMoves(b.insuranceMoves, c);
        _queueWithdrawals(b.withdrawals, c);
        _serveForced(b.forcedServes, b.assets, c);
        _proveSolvency(b.assets, c);

        bytes32 payoutsHash = c.payoutsHash;
        bytes32 stateRoot = keccak256(abi.encode(b.assets));
        batchHash = _hashBatch(b, stateRoot, depositAcc, payoutsHash);
        uint256[] memory prices = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            _ledger[c.tokens[i]] = c.ledgers[i];
            prices[i] = b.assets[i].price;
        }
        priceBounds.commit(c.tokens, prices);
        batchRecord[b.batchId] = BatchRecord({
            stateRoot: stateRoot,
            checkpoint: keccak256(abi.encode(batchHash, c.ledgers)),
            payoutsHash: payoutsHash,
            acceptedAt: uint64(block.timestamp),
            seq: c.seq,
            lastCreditedDepositId: b.lastCreditedDepositId,
            payoutsDone: 0
        });
        _head = Head({
            lastBatchId: b.batchId,
            lastBatchAt: uint64(block.timestamp),
            lastCreditedDepositId: b.lastCreditedDepositId,
            seq: c.seq,
            frozen: false
        });
        lastBatchHash = batchHash;
        emit BatchAccepted(b.batchId, batchHash, stateRoot, payoutsHash, c.ledgers);
    }

    function _hashBatch(Batch calldata b, bytes32 stateRoot, bytes32 depositAcc, bytes32 payoutsHash)
        private
        view
        returns (bytes32)
    {
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
                depositAcc,
                payoutsHash,
                keccak256(abi.encode(b.insuranceMoves))
            )
        );
    }

    /// Header of the published data: magic (4 B) | batchId (uint64 BE) | assetCount (uint8). The rest (the leaf
    /// changes) is checked off chain by anyone who rebuilds the trees (docs/contracts.md, settlement/published_data).
    function _checkData(bytes calldata data, uint64 batchId, uint256 n) private pure {
        if (
            data.length < 13 || bytes4(data[0:4]) != DATA_MAGIC || uint64(bytes8(data[4:12])) != batchId
                || uint8(data[12]) != n
        ) revert BadPublishedData();
    }

    function _creditDeposits(Batch calldata b, uint48 prevD, Ctx memory c)
        private
        view
        returns (bytes32 acc)
    {
        uint48 d = b.lastCreditedDepositId;
        if (d < prevD) revert DepositIdRegressed(prevD, d);
        uint48 count = vault.depositCount();
        if (d > count) revert DepositNotMade(count, d);
        if (b.deposits.length != d - prevD) revert DepositCountMismatch(d - prevD, b.deposits.length);
        acc = vault.depositAccumulator(prevD);
        for (uint256 k; k < b.deposits.length; ++k) {
            DepositRecord calldata r = b.deposits[k];
            uint256 id = prevD + 1 + k;
            acc = keccak256(abi.encode(acc, id, r.account, r.token, r.amount, r.depositedAt));
            if (!vault.reclaimed(id)) c.ledgers[_indexOf(c.tokens, r.token)].credited += r.amount;
        }
        if (acc != vault.depositAccumulator(d)) revert DepositAccumulatorMismatch(d);
    }

    function _applyInsuranceMoves(InsuranceMove[] calldata moves, Ctx memory c) private {
        for (uint256 j; j < moves.length; ++j) {
            address t = moves[j].token;
            int256 amount = moves[j].amount;
            uint256 i = _indexOf(c.tokens, t);
            if (amount == 0) revert ZeroAmount();
            if (amount > 0) {
                uint256 a = uint256(amount);
                c.ledgers[i].queued += a;
                _queue(c, Payout(TO_FUND, address(insuranceFund), t, a, address(insuranceFund), 0));
            } else {
                uint256 a = uint256(-amount);
                c.ledgers[i].fundIn += a;
                insuranceFund.payToVault(c.batchId, t, a);
            }
        }
    }

    function _queueWithdrawals(SignedWithdrawal[] calldata ws, Ctx memory c) private {
        for (uint256 j; j < ws.length; ++j) {
            SignedWithdrawal calldata w = ws[j];
            uint256 i = _indexOf(c.tokens, w.token);
            if (w.amount == 0) revert ZeroAmount();
            if (w.destination == address(0)) revert ZeroDestination();
            if (block.timestamp > w.expiry) revert WithdrawalExpired(w.account, w.nonce, w.expiry);
            _useNonce(w.account, w.nonce);
            bytes32 digest = withdrawalDigest(w.account, w.token, w.amount, w.destination, w.nonce, w.expiry);
            if (!SignatureChecker.isValidSignatureNowCalldata(w.account, digest, w.signature)) {
                revert InvalidSignature(w.account, w.nonce);
            }
            c.ledgers[i].queued += w.amount;
            _queue(c, Payout(WITHDRAWAL, w.account, w.token, w.amount, w.destination, w.nonce));
        }
    }

    function _serveForced(ForcedServe[] calldata serves, AssetState[] calldata assets, Ctx memory c) private {
        for (uint256 j; j < serves.length; ++j) {
            ForcedServe calldata s = serves[j];
            (address account, address token, address destination, uint256 requested) =
                escapeHatch.serveForced(s.requestId, s.amount, c.batchId, c.seq);
            uint256 i = _indexOf(c.tokens, token);
            if (s.amount < requested) {
                AssetState calldata a = assets[i];
                bytes32 leaf = SumTree.leafHash(account, token, 0);
                if (!SumTree.verifyLeaf(a.claimsRoot, a.claimsTotal, leaf, 0, s.leafIndex, s.proof)) {
                    revert ForcedShortServeUnproven(s.requestId);
                }
            }
            if (s.amount != 0) {
                c.ledgers[i].queued += s.amount;
                _queue(c, Payout(FORCED, account, token, s.amount, destination, s.requestId));
            }
            emit ForcedWithdrawalServed(s.requestId, c.batchId, s.amount);
        }
    }

    function _proveSolvency(AssetState[] calldata assets, Ctx memory c) private view {
        uint256 valueSum;
        for (uint256 i; i < assets.length; ++i) {
            AssetState calldata a = assets[i];
            address t = c.tokens[i];
            Ledger memory l = c.ledgers[i];
            uint256 inflow = l.credited + l.fundIn;
            if (l.queued > inflow) revert OutflowExceedsHoldings(t, l.queued, inflow);
            uint256 holdings = inflow - l.queued;
            if (
                a.liabilitiesTotal > type(uint256).max - holdings
                    || a.claimsTotal != holdings + a.liabilitiesTotal
            ) {
                revert SolvencyMismatch(t, a.claimsTotal, a.liabilitiesTotal, holdings);
            }
            if (a.price == 0 || a.price > Valuation.MAX_PRICE) revert PriceOutOfRange(t, a.price);
            uint8 dec = vault.decimalsOf(t);
            if (!Valuation.fits(a.claimsTotal, a.price, dec)) revert ValueOverflow(t);
            uint256 v = Valuation.value(a.claimsTotal, a.price, dec, Math.Rounding.Ceil);
            if (v > type(uint256).max - valueSum) revert ValueOverflow(t);
            valueSum += v;
            uint256 required = holdings + (l.queued - executed[t])
                + (vault.totalDeposited(t) - l.credited - vault.reclaimedTotal(t))
                + vault.totalPendingPayout(t);
            uint256 balance = IERC20(t).balanceOf(address(vault));
            if (balance < required) revert VaultBalanceShort(t, balance, required);
        }
    }

    /// Payouts hash: h_0 = 0, h_k = keccak256(abi.encode(h_{k-1}, payout_k)); the batch stores h_n.
    function _queue(Ctx memory c, Payout memory p) private {
        c.payoutsHash = keccak256(abi.encode(c.payoutsHash, p));
        emit PayoutQueued(c.batchId, c.np++, p);
    }

    function _useNonce(address account, uint256 nonce) private {
        uint256 bit = 1 << (nonce & 0xff);
        uint256 word = nonceBitmap[account][nonce >> 8];
        if (word & bit != 0) revert NonceAlreadyUsed(account, nonce);
        nonceBitmap[account][nonce >> 8] = word | bit;
    }

    function _indexOf(address[] memory tokens, address t) private pure returns (uint256) {
        for (uint256 i; i < tokens.length; ++i) {
            if (tokens[i] == t) return i;
        }
        revert TokenNotListed(t);
    }

    // ------------------------------------------------------------------ payouts

    /// @notice Pay the next `count` payouts of canonical batch `batchId` once its dispute window has passed. Anyone
    ///         may call (the operator's settlement process normally does). Withdrawals count against the token's
    ///         outflow cap for the current period (not after a freeze); movements to the insurance fund do not. A
    ///         withdrawal that does not fit in what is left of the period's cap waits, whole, for a period with room
    ///         (`OutflowCapExceeded`), unless it is larger than the whole cap: then it could never pass, so what is
    ///         left of the cap is paid as a part (its own `PayoutExecuted`) and the call ends there; the rest follows in
    ///         later periods (audit A-2). A forced request counts as paid from its first part on: its account
    ///         cannot then freeze the exchange over a payout that only the cap delays.
    /// @param batchId the batch
    /// @param payouts all the batch's payouts, in order (from its `PayoutQueued` events)
    /// @param count how many to pay from the first unpaid one (clamped to the rest)
    function executePayouts(uint64 batchId, Payout[] calldata payouts, uint256 count) external nonReentrant {
        Head memory h = _head;
        if (!h.frozen && paused()) revert EnforcedPause(pausedUntil);
        if (batchId == 0 || batchId > h.lastBatchId) revert BatchNotCanonical(batchId);
        BatchRecord storage rec = batchRecord[batchId];
        uint256 finalAt = uint256(rec.acceptedAt) + disputeWindow;
        if (block.timestamp < finalAt) revert BatchNotFinal(batchId, finalAt);
        bytes32 ph;
        for (uint256 k; k < payouts.length; ++k) {
            ph = keccak256(abi.encode(ph, payouts[k]));
        }
        if (ph != rec.payoutsHash || payouts.length == 0) revert PayoutsMismatch(batchId);
        uint256 from = rec.payoutsDone;
        uint256 to = Math.min(from + count, payouts.length);
        if (to <= from) revert NothingToExecute(batchId);
        rec.payoutsDone = uint32(to); // (before any transfer; a part sets it back to its own index)
        uint256 part = payoutPartPaid[batchId]; // (of payout `from` only)
        for (uint256 k = from; k < to; ++k) {
            if (!_payOut(batchId, k, payouts[k], part, h.frozen)) return; // a part: it stays the next one
            part = 0;
        }
    }

    /// @dev Pay payout `k` (of which `part` was paid before): false when only a part of it could be paid now.
    function _payOut(uint64 batchId, uint256 k, Payout calldata p, uint256 part, bool uncapped)
        private
        returns (bool)
    {
        uint256 owed = p.amount - part; // (a move to the fund is never paid in parts: its `part` is 0)
        uint256 pay = owed;
        // a withdrawal larger than a whole period's cap: what the cap leaves now, as a part (it could never pass)
        if (p.kind != TO_FUND && !uncapped) {
            pay = _spendOutflow(p.token, owed, p.amount > outflowCap[p.token]);
        }
        if (pay < owed) {
            batchRecord[batchId].payoutsDone = uint32(k); // it stays the next one
            payoutPartPaid[batchId] = part + pay;
        } else if (part != 0) {
            delete payoutPartPaid[batchId];
        }
        executed[p.token] += pay;
        if (p.kind == TO_FUND) {
            vault.transferOut(p.token, address(insuranceFund), pay);
            insuranceFund.recordInflow(batchId, p.token, pay);
        } else {
            if (p.kind == FORCED) escapeHatch.markPaid(p.ref); // (settled for the freeze from its first part on)
            vault.payout(p.destination, p.token, pay);
        }
        emit PayoutExecuted(batchId, k, p.account, p.token, pay);
        return pay == owed;
    }

    /// @dev Count `amount` against the token's cap for this period and return it; with `inParts`, when it does not
    ///      fit, what is left of the cap instead (at least 1: else it reverts, as it does without `inParts`).
    function _spendOutflow(address token, uint256 amount, bool inParts) private returns (uint256) {
        OutflowWindow storage w = _outflow[token];
        uint64 period = uint64(block.timestamp / outflowPeriod);
        uint256 spent = w.period == period ? w.spent : 0;
        uint256 cap = outflowCap[token];
        uint256 remaining = cap > spent ? cap - spent : 0;
        if (amount > remaining) {
            if (!inParts || remaining == 0) revert OutflowCapExceeded(token, amount, remaining);
            amount = remaining;
        }
        w.period = period;
        w.spent = spent + amount;
        return amount;
    }

    // ------------------------------------------------------------------ accounts

    /// @notice The EIP-712 digest an account signs to authorise a withdrawal.
    /// @param account the withdrawing account (the signer, or an ERC-1271 smart account)
    /// @param token the listed token
    /// @param amount the amount in token units
    /// @param destination where the tokens go
    /// @param nonce any unused nonce of the account (bitmap: order does not matter)
    /// @param expiry last timestamp a batch may include it
    /// @return the digest
    function withdrawalDigest(
        address account,
        address token,
        uint256 amount,
        address destination,
        uint256 nonce,
        uint256 expiry
    ) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(WITHDRAWAL_TYPEHASH, account, token, amount, destination, nonce, expiry))
        );
    }

    /// @notice Burn nonces of the caller (cancel signed withdrawals not yet included).
    /// @param word the bitmap word (nonce >> 8)
    /// @param mask the bits (1 << (nonce & 255)) to set
    function invalidateNonces(uint256 word, uint256 mask) external {
        nonceBitmap[msg.sender][word] |= mask;
        emit NoncesInvalidated(msg.sender, word, mask);
    }

    // ------------------------------------------------------------------ guardian, watchers, governance

    /// @notice Stop batches and payouts for at most `maxPause` seconds. Never stops freeze, exits, reclaims, claims,
    ///         forced requests, or payouts after a freeze.
    function pause() external onlyRole(GUARDIAN_ROLE) {
        _pause();
    }

    /// @notice Lift the pause early.
    function unpause() external onlyRole(GUARDIAN_ROLE) {
        _unpause();
    }

    /// @notice Void canonical batch `batchId` (still inside its dispute window) and every batch after it: their
    ///         payouts never execute, the ledger returns to batch `batchId - 1`'s, insurance inflows go back to the
    ///         fund, and the operator continues from batch `batchId - 1`. Nonces the voided batches consumed stay
    ///         consumed (the accounts sign again).
    /// @param batchId the first bad batch
    /// @param prevBatchHash the hash of batch `batchId - 1` (0 for the genesis)
    /// @param prevLedgers the ledger after batch `batchId - 1` (from its `BatchAccepted`; empty for the genesis)
    function challengeBatch(uint64 batchId, bytes32 prevBatchHash, Ledger[] calldata prevLedgers)
        external
        nonReentrant
    {
        if (!hasRole(GUARDIAN_ROLE, msg.sender) && !hasRole(WATCHER_ROLE, msg.sender)) {
            revert NotChallenger(msg.sender);
        }
        Head memory h = _head;
        if (h.frozen) revert ExchangeFrozen();
        if (batchId == 0 || batchId > h.lastBatchId) revert BatchNotCanonical(batchId);
        if (block.timestamp >= uint256(batchRecord[batchId].acceptedAt) + disputeWindow) {
            revert BatchFinal(batchId);
        }
        BatchRecord memory prev = batchRecord[batchId - 1];
        if (keccak256(abi.encode(prevBatchHash, prevLedgers)) != prev.checkpoint) {
            revert CheckpointMismatch(batchId - 1);
        }
        _restoreLedgers(batchId, prevLedgers);
        _head = Head({
            lastBatchId: batchId - 1,
            lastBatchAt: prev.acceptedAt,
            lastCreditedDepositId: prev.lastCreditedDepositId,
            seq: h.seq,
            frozen: false
        });
        lastBatchHash = prevBatchHash;
        emit BatchesRolledBack(batchId, h.lastBatchId, msg.sender);
    }

    /// Put back the ledger of an earlier canonical batch; insurance-fund inflows since then return to the fund.
    function _restoreLedgers(uint64 batchId, Ledger[] calldata prevLedgers) private {
        address[] memory tokens = vault.listedTokens();
        for (uint256 i; i < tokens.length; ++i) {
            Ledger memory p;
            if (i < prevLedgers.length) p = prevLedgers[i];
            address t = tokens[i];
            uint256 back = _ledger[t].fundIn - p.fundIn;
            _ledger[t] = p;
            if (back != 0) {
                vault.transferOut(t, address(insuranceFund), back);
                insuranceFund.recordInflow(batchId, t, back);
                emit FundInflowReturned(t, back);
            }
        }
    }

    /// @notice Remove a watcher at once (adding one is governance's, through the timelock).
    /// @param watcher the watcher
    function removeWatcher(address watcher) external onlyRole(GUARDIAN_ROLE) {
        _revokeRole(WATCHER_ROLE, watcher);
    }

    /// @notice Set `token`'s outflow cap per period (governance, through the timelock).
    /// @param token a listed token
    /// @param cap the most its payouts may total per outflow period
    function setOutflowCap(address token, uint256 cap) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (!vault.isListed(token)) revert TokenNotListed(token);
        outflowCap[token] = cap;
        emit OutflowCapSet(token, cap);
    }

    /// @notice Set (or, with feed 0, remove) the price feed bounding `token`'s committed prices (governance, through
    ///         the timelock; audit A-1). Rules: `PriceBounds`. Reverts `TokenNotListed`, `BadPriceFeed`.
    /// @param token a listed token other than the numeraire (listed token 0)
    /// @param feed an AggregatorV3Interface feed (USD per whole token), or 0 to remove it
    /// @param maxDeviationPpm most a committed price may be away from the feed's answer, 0 < it <= 500,000
    /// @param maxAgeSeconds how old the feed's answer may be, > 0 (older: the price may not change)
    function setPriceFeed(address token, address feed, uint32 maxDeviationPpm, uint32 maxAgeSeconds)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        priceBounds.setPriceFeed(token, feed, maxDeviationPpm, maxAgeSeconds);
    }

    /// @notice List a new collateral token with its outflow cap (governance, through the timelock).
    /// @param token the ERC-20
    /// @param cap its outflow cap per period
    function listToken(address token, uint256 cap) external onlyRole(DEFAULT_ADMIN_ROLE) {
        vault.listToken(token);
        outflowCap[token] = cap;
        emit OutflowCapSet(token, cap);
    }

    // ------------------------------------------------------------------ escape hatch

    /// @notice Freeze once no batch has been accepted for `freezePeriod` seconds. Anyone may.
    /// @param escapeBatchId_ the last canonical batch whose dispute window has passed (0 if none)
    function freeze(uint64 escapeBatchId_) external nonReentrant {
        Head memory h = _head;
        if (h.frozen) revert ExchangeFrozen();
        uint256 at = uint256(h.lastBatchAt) + freezePeriod;
        if (block.timestamp < at) revert NotStale(at);
        _freeze(h, escapeBatchId_, 1, 0);
    }

    /// @notice Freeze because forced request `requestId` was not settled in time (called by the EscapeHatch, which
    ///         checked it: `EscapeHatch.freezeForUnservedRequest`).
    /// @param escapeBatchId_ the last canonical batch whose dispute window has passed (0 if none)
    /// @param requestId the overdue request
    function freezeForRequest(uint64 escapeBatchId_, uint256 requestId) external nonReentrant {
        if (msg.sender != address(escapeHatch)) revert NotEscapeHatch(msg.sender);
        Head memory h = _head;
        if (h.frozen) revert ExchangeFrozen();
        _freeze(h, escapeBatchId_, 2, requestId);
    }

    function _freeze(Head memory h, uint64 e, uint8 reason, uint256 requestId) private {
        if (e > h.lastBatchId) revert EscapeBatchInvalid(e);
        BatchRecord memory rec = batchRecord[e];
        uint256 finalAt = uint256(rec.acceptedAt) + disputeWindow;
        if (e != 0 && block.timestamp < finalAt) revert EscapeBatchNotFinal(e, finalAt);
        if (e < h.lastBatchId && block.timestamp >= uint256(batchRecord[e + 1].acceptedAt) + disputeWindow) {
            revert NotLatestFinalBatch(e, e + 1);
        }
        h.frozen = true;
        h.lastBatchId = e;
        h.lastCreditedDepositId = rec.lastCreditedDepositId;
        _head = h;
        escapeBatchId = e;
        emit Frozen(e, rec.stateRoot, msg.sender, reason, requestId);
    }

    /// @notice After a freeze, send insurance-fund inflows of the batches voided by the freeze back to the fund.
    ///         Anyone may; idempotent.
    /// @param batchHash the escape batch's hash
    /// @param ledgers the escape batch's ledger (from its `BatchAccepted`)
    function returnVoidedFundInflows(bytes32 batchHash, Ledger[] calldata ledgers) external nonReentrant {
        if (!_head.frozen) revert ExchangeNotFrozen();
        uint64 e = escapeBatchId;
        if (keccak256(abi.encode(batchHash, ledgers)) != batchRecord[e].checkpoint) {
            revert CheckpointMismatch(e);
        }
        _restoreLedgers(e, ledgers);
    }

    // ------------------------------------------------------------------ views

    /// @notice True once the escape hatch is open.
    /// @return whether frozen
    function frozen() external view returns (bool) {
        return _head.frozen;
    }

    /// @notice Id of the last canonical batch (after a freeze: the escape batch).
    /// @return the id
    function lastBatchId() external view returns (uint64) {
        return _head.lastBatchId;
    }

    /// @notice Acceptance time of the last canonical batch (deployment time before the first).
    /// @return seconds since the epoch
    function lastBatchAt() external view returns (uint64) {
        return _head.lastBatchAt;
    }

    /// @notice Last deposit id credited by the canonical chain (after a freeze: by the escape batch).
    /// @return the deposit id
    function lastCreditedDepositId() external view returns (uint48) {
        return _head.lastCreditedDepositId;
    }

    /// @notice State root of the last canonical batch (0 before the first).
    /// @return the root
    function lastStateRoot() external view returns (bytes32) {
        return batchRecord[_head.lastBatchId].stateRoot;
    }

    /// @notice Whether canonical batch `batchId`'s dispute window has passed.
    /// @param batchId the batch
    /// @return true when final
    function isFinal(uint64 batchId) external view returns (bool) {
        return batchId <= _head.lastBatchId
            && block.timestamp >= uint256(batchRecord[batchId].acceptedAt) + disputeWindow;
    }

    /// @notice The current ledger of `token` (cumulative credited, fund inflows, queued payouts).
    /// @param token a listed token
    /// @return the ledger
    function ledger(address token) external view returns (Ledger memory) {
        return _ledger[token];
    }

    /// @notice The accounts' holdings of `token`: credited deposits + fund inflows - queued payouts. Equals the last
    ///         canonical batch's claims - liabilities.
    /// @param token a listed token
    /// @return the amount the vault holds for accounts
    function accountHoldings(address token) external view returns (uint256) {
        Ledger memory l = _ledger[token];
        return l.credited + l.fundIn - l.queued;
    }

    /// @notice Payouts queued by canonical batches and not executed yet (after a freeze: of batches up to the
    ///         escape batch once `returnVoidedFundInflows` restored its ledger).
    /// @param token a listed token
    /// @return the amount
    function pendingPayouts(address token) external view returns (uint256) {
        return _ledger[token].queued - executed[token];
    }

    /// @notice What `token`'s payouts may still total in the current outflow period.
    /// @param token a listed token
    /// @return the remaining allowance
    function outflowRemaining(address token) external view returns (uint256) {
        OutflowWindow memory w = _outflow[token];
        uint256 spent = w.period == uint64(block.timestamp / outflowPeriod) ? w.spent : 0;
        uint256 cap = outflowCap[token];
        return cap > spent ? cap - spent : 0;
    }

    /// @notice Whether `account`'s `nonce` is used or invalidated.
    /// @param account the account
    /// @param nonce the nonce
    /// @return true when it can no longer authorise a withdrawal
    function nonceUsed(address account, uint256 nonce) external view returns (bool) {
        return nonceBitmap[account][nonce >> 8] & (1 << (nonce & 0xff)) != 0;
    }
}
