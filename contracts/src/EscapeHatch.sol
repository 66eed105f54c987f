// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {ClearingHouse} from "./ClearingHouse.sol";
import {Vault} from "./Vault.sol";
import {SumTree} from "./libraries/SumTree.sol";
import {Valuation} from "./libraries/Valuation.sol";

/// @title EscapeHatch
/// @notice The exits that need nothing from the operator and that no role can stop or pause: forced withdrawal
///         requests (unpaid in time, anyone freezes the exchange) and, after a freeze, each account's exit of its
///         net value of the escape batch's state, once, by sum-tree proofs of its leaves. (Uncredited deposits are
///         reclaimed in the Vault.)
/// @dev Forced withdrawals: an account asks on chain (`requestForcedWithdrawal`); a canonical batch serves it
///      (`ClearingHouse` calls `serveForced`) in full, or with less and a proof that the account's claim leaf of the
///      token is 0 (it had less than it asked); the payout then waits for the dispute window and the outflow cap like
///      any other. The request is settled once paid, served with nothing by a canonical batch, or cancelled; an
///      unsettled request older than `forcedWithdrawalPeriod` lets anyone freeze (`freezeForUnservedRequest`). A
///      batch that served it and is later voided leaves it unserved again.
///
///      The escape batch is the last canonical batch whose dispute window had passed at the freeze
///      (`ClearingHouse.escapeBatchId`, its state root `ClearingHouse.lastStateRoot()` once frozen). Its data was
///      published with it and it was open to challenge for the whole window: its leaves can be rebuilt by anyone.
///
///      Exits, with H_t = claimsTotal_t - liabilitiesTotal_t the vault's holdings of token t for accounts:
///       - no liabilities anywhere in that state: each claim leaf is paid in kind (amount == leaf);
///       - liabilities somewhere ("basket" mode): an account's net value at the batch's committed prices
///             net = sum_t value(claim_t) rounded down - sum_t value(liability_t) rounded up   (0 if negative)
///         is paid as the same fraction of every token's holdings,
///             pay_t = floor(H_t * net / pool),   pool = sum_t value(H_t) rounded up >= sum of all nets,
///         so the amount a debtor's liabilities net away stays in the vault for its creditors, every account gets
///         its exact value at those prices (less rounding), and no exit depends on the order of exits.
///      The engine's loss waterfall leaves every account's net >= 0 at the batch's prices, so the nets sum to at most
///      the pool. Should a batch break that (an account under water at its own prices), the positive nets exceed the
///      pool and each exit is clamped to what is left of each token: no exit ever reverts for lack of funds.
///      Invariants: each account exits once; per token, exits never exceed H_t; a payout a token refuses is
///      deferred in the Vault, claimable by `to`, so one broken token never blocks the exit of the others.
contract EscapeHatch is ReentrancyGuardTransient {
    /// @notice A leaf and its sum-tree proof.
    struct LeafProof {
        uint256 amount;
        uint256 index;
        SumTree.Node[] proof;
    }

    /// @notice A forced withdrawal request made on chain by the account.
    struct ForcedRequest {
        address account;
        uint64 requestedAt;
        bool cancelled;
        bool paid;
        address token;
        uint64 includedBatchId;
        address destination;
        uint64 includedSeq;
        uint256 amount;
        uint256 servedAmount;
    }

    /// @notice The ClearingHouse whose frozen state accounts exit.
    ClearingHouse public immutable clearingHouse;
    /// @notice The custody contract (pays the exits).
    Vault public immutable vault;
    /// @notice Seconds within which a forced request must be settled (the ClearingHouse's, copied).
    uint256 public immutable forcedWithdrawalPeriod;

    /// @notice Forced withdrawal requests by id (1, 2, 3, ...).
    mapping(uint256 requestId => ForcedRequest) public forcedRequest;
    /// @notice Number of forced withdrawal requests made.
    uint256 public forcedRequestCount;

    /// @notice Whether `account` has used the escape hatch.
    mapping(address account => bool) public escaped;
    /// @notice Sum of exits per token.
    mapping(address token => uint256) public escapedOut;

    /// @notice `account` exited `amount` of `token` to `to`.
    event EscapeExit(address indexed account, address indexed token, uint256 amount, address to);
    /// @notice `account` used the escape hatch (`basket`: liabilities existed; its exit was netted, pro rata).
    event Escaped(address indexed account, address to, bool basket);

    /// @notice `account` asked on chain for a withdrawal, to be settled by `deadline`.
    event ForcedWithdrawalRequested(
        uint256 indexed requestId,
        address indexed account,
        address token,
        uint256 amount,
        address destination,
        uint256 deadline
    );
    /// @notice The request was cancelled by its account.
    event ForcedWithdrawalCancelled(uint256 indexed requestId);

    /// @notice Only the ClearingHouse may call this.
    error NotClearingHouse(address caller);
    /// @notice The exchange is frozen: exits go through `escape`.
    error ExchangeFrozen();
    /// @notice `token` is not listed.
    error TokenNotListed(address token);
    /// @notice A forced withdrawal of nothing.
    error NothingToWithdraw();
    /// @notice A withdrawal to the zero address.
    error ZeroDestination();
    /// @notice No forced request with this id.
    error UnknownRequest(uint256 requestId);
    /// @notice Only the requesting account may do this.
    error NotRequester(uint256 requestId);
    /// @notice The request was cancelled.
    error RequestCancelled(uint256 requestId);
    /// @notice The request was served by a canonical batch already.
    error ForcedAlreadyServed(uint256 requestId);
    /// @notice A serve above the requested amount.
    error ForcedServeExceedsRequest(uint256 requestId, uint256 amount, uint256 requested);
    /// @notice The request is paid, served with nothing, or cancelled: nothing is overdue.
    error RequestSettled(uint256 requestId);
    /// @notice The request is not overdue before `deadline`.
    error RequestNotOverdue(uint256 requestId, uint256 deadline);
    /// @notice The Vault must name this contract as its escape hatch and the ClearingHouse as its clearing house.
    error NotWired();
    /// @notice A zero address where one is not allowed.
    error ZeroAddress();
    /// @notice The exchange is not frozen.
    error ExchangeNotFrozen();
    /// @notice No batch was final at the freeze: there is nothing to exit (deposits are reclaimable).
    error NoEscapeRoot();
    /// @notice The asset list does not hash to the escape batch's state root.
    error StateRootMismatch(bytes32 expected, bytes32 got);
    /// @notice One leaf proof per asset is required (liabilities too when any asset has liabilities).
    error ProofCountMismatch();
    /// @notice The proof of asset `assetIndex`'s leaf of `kind` (0 claims, 2 liabilities) does not verify.
    error InvalidProof(uint256 assetIndex, uint8 kind);
    /// @notice The account already used the escape hatch.
    error AlreadyEscaped(address account);

    /// @param clearingHouse_ the ClearingHouse (its vault must name this contract as escape hatch)
    constructor(ClearingHouse clearingHouse_) {
        if (address(clearingHouse_) == address(0)) revert ZeroAddress();
        Vault v = clearingHouse_.vault();
        if (v.escapeHatch() != address(this) || v.clearingHouse() != address(clearingHouse_)) {
            revert NotWired();
        }
        clearingHouse = clearingHouse_;
        vault = v;
        forcedWithdrawalPeriod = clearingHouse_.forcedWithdrawalPeriod();
    }

    modifier onlyClearingHouse() {
        if (msg.sender != address(clearingHouse)) revert NotClearingHouse(msg.sender);
        _;
    }

    // ------------------------------------------------------------------ forced withdrawals

    /// @notice Ask for a withdrawal on chain (the caller is the account). Unless a canonical batch serves it and the
    ///         payout is made (or the batch proves the account holds less) within `forcedWithdrawalPeriod`, anyone
    ///         may freeze the exchange.
    /// @param token the listed token
    /// @param amount the amount (> 0); served in full, or with all the account has of the token
    /// @param destination where the tokens go
    /// @return requestId the request's id
    function requestForcedWithdrawal(address token, uint256 amount, address destination)
        external
        returns (uint256 requestId)
    {
        if (clearingHouse.frozen()) revert ExchangeFrozen();
        if (!vault.isListed(token)) revert TokenNotListed(token);
        if (amount == 0) revert NothingToWithdraw();
        if (destination == address(0)) revert ZeroDestination();
        requestId = ++forcedRequestCount;
        ForcedRequest storage r = forcedRequest[requestId];
        r.account = msg.sender;
        r.requestedAt = uint64(block.timestamp);
        r.token = token;
        r.destination = destination;
        r.amount = amount;
        emit ForcedWithdrawalRequested(
            requestId, msg.sender, token, amount, destination, block.timestamp + forcedWithdrawalPeriod
        );
    }

    /// @notice Withdraw a forced request no canonical batch has served yet.
    /// @param requestId the request
    function cancelForcedWithdrawal(uint256 requestId) external {
        ForcedRequest storage r = forcedRequest[requestId];
        if (r.account != msg.sender) revert NotRequester(requestId);
        if (r.cancelled) revert RequestCancelled(requestId);
        if (_isIncluded(r)) revert ForcedAlreadyServed(requestId);
        r.cancelled = true;
        emit ForcedWithdrawalCancelled(requestId);
    }

    /// @notice Freeze the exchange because request `requestId` is not settled `forcedWithdrawalPeriod` after it was
    ///         made. Anyone may.
    /// @param requestId the overdue request
    /// @param escapeBatchId the last canonical batch whose dispute window has passed (0 if none)
    function freezeForUnservedRequest(uint256 requestId, uint64 escapeBatchId) external {
        ForcedRequest storage r = forcedRequest[requestId];
        if (r.account == address(0)) revert UnknownRequest(requestId);
        if (_isSettled(r)) revert RequestSettled(requestId);
        uint256 deadline = uint256(r.requestedAt) + forcedWithdrawalPeriod;
        if (block.timestamp < deadline) revert RequestNotOverdue(requestId, deadline);
        clearingHouse.freezeForRequest(escapeBatchId, requestId);
    }

    /// @notice Record that batch `batchId` (sequence `seq`) serves request `requestId` with `amount` (ClearingHouse
    ///         only, while accepting the batch; it checks the proof of a short serve).
    /// @return account the requesting account
    /// @return token the requested token
    /// @return destination where the payout goes
    /// @return requested the amount asked for
    function serveForced(uint256 requestId, uint256 amount, uint64 batchId, uint64 seq)
        external
        onlyClearingHouse
        returns (address account, address token, address destination, uint256 requested)
    {
        ForcedRequest storage r = forcedRequest[requestId];
        account = r.account;
        if (account == address(0)) revert UnknownRequest(requestId);
        if (r.cancelled) revert RequestCancelled(requestId);
        // served by a canonical batch, or earlier in this very batch (not canonical while it is submitted)
        if (_isIncluded(r) || (r.includedBatchId == batchId && r.includedSeq == seq)) {
            revert ForcedAlreadyServed(requestId);
        }
        requested = r.amount;
        if (amount > requested) revert ForcedServeExceedsRequest(requestId, amount, requested);
        r.includedBatchId = batchId;
        r.includedSeq = seq;
        r.servedAmount = amount;
        token = r.token;
        destination = r.destination;
    }

    /// @notice Record that the payout of request `requestId` was made (ClearingHouse only).
    /// @param requestId the request
    function markPaid(uint256 requestId) external onlyClearingHouse {
        forcedRequest[requestId].paid = true;
    }

    /// @notice Whether request `requestId` is settled (paid, served with nothing by a canonical batch, or
    ///         cancelled): an unsettled request past its deadline lets anyone freeze.
    /// @param requestId the request
    /// @return true when settled
    function isForcedRequestSettled(uint256 requestId) external view returns (bool) {
        return _isSettled(forcedRequest[requestId]);
    }

    function _isIncluded(ForcedRequest storage r) private view returns (bool) {
        uint64 b = r.includedBatchId;
        if (b == 0 || b > clearingHouse.lastBatchId()) return false;
        (,,,, uint64 seq,,) = clearingHouse.batchRecord(b);
        return seq == r.includedSeq;
    }

    function _isSettled(ForcedRequest storage r) private view returns (bool) {
        return r.cancelled || r.paid || (r.servedAmount == 0 && _isIncluded(r));
    }

    // ------------------------------------------------------------------ escape

    /// @notice Exit the caller's net value of the escape batch's state (see the contract doc).
    /// @param assets the escape batch's asset states (must hash to its state root)
    /// @param claims the caller's claim leaf per asset (amount 0, no proof, where the tree is empty)
    /// @param liabilities the caller's liability leaf per asset (required iff any asset has liabilities)
    /// @param to the recipient
    function escape(
        ClearingHouse.AssetState[] calldata assets,
        LeafProof[] calldata claims,
        LeafProof[] calldata liabilities,
        address to
    ) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        if (escaped[msg.sender]) revert AlreadyEscaped(msg.sender);
        (uint256[] memory pay, bool basket) = exitAmounts(msg.sender, assets, claims, liabilities);
        escaped[msg.sender] = true;
        for (uint256 i; i < assets.length; ++i) {
            address t = assets[i].token;
            uint256 left = assets[i].claimsTotal - assets[i].liabilitiesTotal - escapedOut[t];
            uint256 amount = pay[i] < left ? pay[i] : left; // binds only for an unsound batch (see contract doc)
            if (amount == 0) continue;
            escapedOut[t] += amount;
            vault.payout(to, t, amount);
            emit EscapeExit(msg.sender, t, amount, to);
        }
        emit Escaped(msg.sender, to, basket);
    }

    /// @notice What `account` exits with these proofs (reverts as `escape` would on a bad proof).
    /// @param account the exiting account
    /// @param assets the escape batch's asset states
    /// @param claims the account's claim leaves
    /// @param liabilities the account's liability leaves
    /// @return pay per asset, the amount paid
    /// @return basket whether liabilities exist (netted, pro-rata exits)
    function exitAmounts(
        address account,
        ClearingHouse.AssetState[] calldata assets,
        LeafProof[] calldata claims,
        LeafProof[] calldata liabilities
    ) public view returns (uint256[] memory pay, bool basket) {
        ClearingHouse ch = clearingHouse;
        if (!ch.frozen()) revert ExchangeNotFrozen();
        if (ch.escapeBatchId() == 0) revert NoEscapeRoot();
        bytes32 root = keccak256(abi.encode(assets));
        bytes32 expected = ch.lastStateRoot();
        if (root != expected) revert StateRootMismatch(expected, root);
        uint256 n = assets.length;
        for (uint256 i; i < n; ++i) {
            if (assets[i].liabilitiesTotal != 0) basket = true;
        }
        if (claims.length != n || (basket && liabilities.length != n)) revert ProofCountMismatch();
        pay = basket ? _basketShares(account, assets, claims, liabilities) : _inKind(account, assets, claims);
    }

    function _inKind(address account, ClearingHouse.AssetState[] calldata assets, LeafProof[] calldata claims)
        private
        pure
        returns (uint256[] memory amounts)
    {
        amounts = new uint256[](assets.length);
        for (uint256 i; i < assets.length; ++i) {
            ClearingHouse.AssetState calldata a = assets[i];
            _checkLeaf(account, a.claimsRoot, a.claimsTotal, a.token, claims[i], i, SumTree.CLAIM);
            amounts[i] = claims[i].amount;
        }
    }

    function _basketShares(
        address account,
        ClearingHouse.AssetState[] calldata assets,
        LeafProof[] calldata claims,
        LeafProof[] calldata liabs
    ) private view returns (uint256[] memory pay) {
        uint256 owed; // claims value, rounded down
        uint256 owes; // liabilities value, rounded up
        uint256 pool; // the holdings' value, rounded up
        for (uint256 i; i < assets.length; ++i) {
            ClearingHouse.AssetState calldata a = assets[i];
            _checkLeaf(account, a.claimsRoot, a.claimsTotal, a.token, claims[i], i, SumTree.CLAIM);
            _checkLeaf(
                account, a.liabilitiesRoot, a.liabilitiesTotal, a.token, liabs[i], i, SumTree.LIABILITY
            );
            uint8 dec = vault.decimalsOf(a.token);
            owed += Valuation.value(claims[i].amount, a.price, dec, Math.Rounding.Floor);
            owes += Valuation.value(liabs[i].amount, a.price, dec, Math.Rounding.Ceil);
            pool += Valuation.value(a.claimsTotal - a.liabilitiesTotal, a.price, dec, Math.Rounding.Ceil);
        }
        pay = new uint256[](assets.length);
        if (owed <= owes) return pay;
        uint256 net = owed - owes;
        for (uint256 i; i < assets.length; ++i) {
            pay[i] = Math.mulDiv(assets[i].claimsTotal - assets[i].liabilitiesTotal, net, pool);
        }
    }

    function _checkLeaf(
        address account,
        bytes32 root,
        uint256 total,
        address token,
        LeafProof calldata p,
        uint256 i,
        uint8 kind
    ) private pure {
        if (root == bytes32(0) && total == 0 && p.amount == 0) return; // empty tree: nothing to prove
        bytes32 leaf = kind == SumTree.CLAIM
            ? SumTree.leafHash(account, token, p.amount)
            : SumTree.liabilityLeafHash(account, token, p.amount);
        if (!SumTree.verifyLeaf(root, total, leaf, p.amount, p.index, p.proof)) revert InvalidProof(i, kind);
    }
}
