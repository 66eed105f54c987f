// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IClearingHouseStatus} from "./interfaces/IClearingHouseStatus.sol";
import {ExpiringPause} from "./utils/ExpiringPause.sol";

/// @title Vault
/// @notice Custody of the listed ERC-20 collateral tokens of the hx exchange.
/// @dev Invariants:
///  - deposit ids are 1, 2, 3, ... across all tokens, one per `Deposited` event, never reused;
///  - `depositAccumulator(id)` is the running hash of deposits 1..id (0 for id 0):
///        acc(id) = keccak256(abi.encode(acc(id - 1), id, account, token, amount, depositedAt))
///    A batch that credits deposits up to id d must present them and reproduce acc(d): it credits exactly the
///    deposits the chain holds, never a reorged-away or substituted one;
///  - `totalDeposited[token]` is the sum of all deposits of `token` (uint256, no narrower counter anywhere);
///  - a deposit is credited by the canonical chain (id <= ClearingHouse.lastCreditedDepositId) or reclaimed by its
///    account (`reclaimed`, after the credit period or a freeze), never both: batches skip reclaimed ids;
///  - tokens leave only through `payout`/`transferOut`, callable by the immutable ClearingHouse (finalised
///    payouts, insurance movements) and `payout` by the immutable EscapeHatch (exits after a freeze), through
///    `reclaimDeposit` by the account of an uncredited deposit, or through `claim` of a deferred payout by its
///    own recipient. No role here (governance, guardian) can move a token out;
///  - `totalPendingPayout[token]` is the sum of `pendingPayout[*][token]`.
contract Vault is AccessControl, ExpiringPause, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Role that may pause deposits (and nothing else); pauses expire on their own.
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    /// @notice Upper bound on listed tokens: keeps every per-asset loop of a batch bounded.
    uint256 public constant MAX_TOKENS = 16;
    /// @notice Largest supported token decimals (prices are micro-USDC per 10^decimals units).
    uint8 public constant MAX_DECIMALS = 36;

    /// @notice The contract that moves tokens out for batches, insurance movements and reclaims (set once).
    address public immutable clearingHouse;
    /// @notice The contract that pays escape exits after a freeze (set once).
    address public immutable escapeHatch;

    address[] private _tokens;
    /// @notice Whether `token` is listed.
    mapping(address token => bool) public isListed;
    /// @notice The token's decimals, read once at listing.
    mapping(address token => uint8) public decimalsOf;
    /// @notice Id of the last deposit (0 before the first).
    uint48 public depositCount;
    /// @notice Running hash of deposits 1..id (see contract doc).
    mapping(uint256 depositId => bytes32) public depositAccumulator;
    /// @notice Sum of all deposits of `token` so far.
    mapping(address token => uint256) public totalDeposited;
    /// @notice Whether deposit `depositId` was reclaimed (no batch credits it afterwards).
    mapping(uint256 depositId => bool) public reclaimed;
    /// @notice Sum of reclaimed deposits per token.
    mapping(address token => uint256) public reclaimedTotal;
    /// @notice Payouts whose push transfer failed, claimable by their recipient.
    mapping(address recipient => mapping(address token => uint256)) public pendingPayout;
    /// @notice Sum of `pendingPayout` per token.
    mapping(address token => uint256) public totalPendingPayout;

    /// @notice A new collateral token was listed at position `index`.
    event TokenListed(address indexed token, uint256 index, uint8 decimals);
    /// @notice `from` deposited `amount` of `token` for `account` at `depositedAt`; ids are sequential across
    ///         tokens; `accumulator` is the running hash through this deposit.
    event Deposited(
        uint48 indexed depositId,
        address indexed account,
        address indexed token,
        uint256 amount,
        address from,
        uint64 depositedAt,
        bytes32 accumulator
    );
    /// @notice `account` reclaimed deposit `depositId`, which no canonical batch had credited.
    event DepositReclaimed(uint48 indexed depositId, address indexed account, address token, uint256 amount);
    /// @notice A payout could not be pushed to `recipient` and waits for `claim`.
    event PayoutDeferred(address indexed recipient, address indexed token, uint256 amount);
    /// @notice A deferred payout was claimed.
    event PayoutClaimed(address indexed recipient, address indexed token, address to, uint256 amount);

    /// @notice A zero address where one is not allowed.
    error ZeroAddress();
    /// @notice A zero amount where one is not allowed.
    error ZeroAmount();
    /// @notice `token` is not a listed collateral token.
    error TokenNotListed(address token);
    /// @notice `token` is listed already.
    error TokenAlreadyListed(address token);
    /// @notice Listing would exceed MAX_TOKENS.
    error TooManyTokens();
    /// @notice The token's decimals could not be read or exceed MAX_DECIMALS.
    error UnsupportedDecimals(address token);
    /// @notice Only the ClearingHouse may call this.
    error NotClearingHouse(address caller);
    /// @notice Only the ClearingHouse or the EscapeHatch may call this.
    error NotPayer(address caller);
    /// @notice The exchange is frozen: no more deposits.
    error ExchangeFrozen();
    /// @notice The vault received a different amount than transferred (fee-on-transfer tokens are unsupported).
    error TransferAmountMismatch(uint256 expected, uint256 received);
    /// @notice Nothing to claim.
    error NothingToClaim();
    /// @notice The deposit was credited by a canonical batch: it is in the sum trees.
    error DepositWasCredited(uint48 depositId);
    /// @notice The deposit (as given, with the caller as its account) does not match the running deposit hash.
    error DepositMismatch(uint48 depositId);
    /// @notice The deposit was reclaimed already.
    error AlreadyReclaimed(uint48 depositId);
    /// @notice The operator may still credit the deposit until `reclaimableAt`.
    error DepositNotOverdue(uint48 depositId, uint256 reclaimableAt);

    modifier onlyClearingHouse() {
        if (msg.sender != clearingHouse) revert NotClearingHouse(msg.sender);
        _;
    }

    /// @param clearingHouse_ the ClearingHouse address (precomputed: it is deployed right after)
    /// @param escapeHatch_ the EscapeHatch address (precomputed: deployed right after the ClearingHouse)
    /// @param governance the TimelockController (admin of the guardian role)
    /// @param guardian pauses deposits (for at most `maxPause_` seconds at a time)
    /// @param maxPause_ longest pause / minimum gap between pauses (seconds)
    /// @param tokens the initial collateral tokens (later ones are listed through the ClearingHouse)
    constructor(
        address clearingHouse_,
        address escapeHatch_,
        address governance,
        address guardian,
        uint256 maxPause_,
        address[] memory tokens
    ) ExpiringPause(maxPause_) {
        if (
            clearingHouse_ == address(0) || escapeHatch_ == address(0) || governance == address(0)
                || guardian == address(0)
        ) revert ZeroAddress();
        clearingHouse = clearingHouse_;
        escapeHatch = escapeHatch_;
        _grantRole(DEFAULT_ADMIN_ROLE, governance);
        _grantRole(GUARDIAN_ROLE, guardian);
        for (uint256 i; i < tokens.length; ++i) {
            _list(tokens[i]);
        }
    }

    // ------------------------------------------------------------------ guardian

    /// @notice Stop deposits for at most `maxPause` seconds. Never affects claims, reclaims or exits.
    function pause() external onlyRole(GUARDIAN_ROLE) {
        _pause();
    }

    /// @notice Lift the pause early.
    function unpause() external onlyRole(GUARDIAN_ROLE) {
        _unpause();
    }

    // ------------------------------------------------------------------ users

    /// @notice Deposit `amount` of a listed `token` for `account`; the engine credits it after N confirmations,
    ///         or the depositor reclaims it once the ClearingHouse's credit period has passed uncredited.
    /// @param token listed collateral token
    /// @param amount amount in token units (> 0); the caller must have approved the vault
    /// @param account the exchange account to credit
    /// @return depositId the sequential id of this deposit
    function deposit(address token, uint256 amount, address account)
        external
        whenNotPaused
        nonReentrant
        returns (uint48 depositId)
    {
        if (!isListed[token]) revert TokenNotListed(token);
        if (amount == 0) revert ZeroAmount();
        if (account == address(0)) revert ZeroAddress();
        if (IClearingHouseStatus(clearingHouse).frozen()) revert ExchangeFrozen();

        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert TransferAmountMismatch(amount, received);

        depositId = depositCount + 1;
        depositCount = depositId;
        uint64 at = uint64(block.timestamp);
        bytes32 acc =
            keccak256(abi.encode(depositAccumulator[depositId - 1], depositId, account, token, amount, at));
        depositAccumulator[depositId] = acc;
        totalDeposited[token] += amount;
        emit Deposited(depositId, account, token, amount, msg.sender, at, acc);
    }

    /// @notice Claim payouts that could not be pushed (e.g. the recipient was blocked by the token).
    /// @param token the token to claim
    /// @param to where to send it
    function claim(address token, address to) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        uint256 amount = pendingPayout[msg.sender][token];
        if (amount == 0) revert NothingToClaim();
        pendingPayout[msg.sender][token] = 0;
        totalPendingPayout[token] -= amount;
        IERC20(token).safeTransfer(to, amount);
        emit PayoutClaimed(msg.sender, token, to, amount);
    }

    /// @notice Take back a deposit no canonical batch has credited, once the ClearingHouse's `depositCreditPeriod`
    ///         has passed since it was made (plus `maxPause` when the ClearingHouse was paused after the deposit; at
    ///         any time after a freeze). No batch credits it afterwards. The caller must be the deposit's account.
    /// @param depositId the deposit id
    /// @param token the deposited token (from `Deposited`)
    /// @param amount the deposited amount
    /// @param depositedAt the deposit's timestamp (from `Deposited`)
    /// @param to the recipient
    function reclaimDeposit(uint48 depositId, address token, uint256 amount, uint64 depositedAt, address to)
        external
        nonReentrant
    {
        if (to == address(0)) revert ZeroAddress();
        IClearingHouseStatus ch = IClearingHouseStatus(clearingHouse);
        if (depositId <= ch.lastCreditedDepositId()) revert DepositWasCredited(depositId);
        if (reclaimed[depositId]) revert AlreadyReclaimed(depositId);
        uint256 at = uint256(depositedAt) + ch.depositCreditPeriod();
        // A pause of the ClearingHouse after the deposit stopped the batches that credit it (audit A-3): the
        // operator gets `maxPause` more (the ClearingHouse's maxPause is this one), so a reclaim never opens while
        // no batch could have credited a deposit the engine has (after one pause, at least maxPause unpaused).
        if (ExpiringPause(clearingHouse).pausedUntil() > depositedAt) at += maxPause;
        if (block.timestamp < at && !ch.frozen()) revert DepositNotOverdue(depositId, at);
        if (
            depositId > depositCount
                || keccak256(
                        abi.encode(
                            depositAccumulator[depositId - 1],
                            uint256(depositId),
                            msg.sender,
                            token,
                            amount,
                            depositedAt
                        )
                    ) != depositAccumulator[depositId]
        ) revert DepositMismatch(depositId);
        reclaimed[depositId] = true;
        reclaimedTotal[token] += amount;
        IERC20(token).safeTransfer(to, amount);
        emit DepositReclaimed(depositId, msg.sender, token, amount);
    }

    // ------------------------------------------------------------------ clearing house

    /// @notice List a new collateral token (governance, through the ClearingHouse, which sets its outflow cap in
    ///         the same call). Tokens are never delisted.
    /// @param token the ERC-20 to list
    function listToken(address token) external onlyClearingHouse {
        _list(token);
    }

    /// @notice Pay `amount` of `token` to `recipient`: push it, or keep it claimable if the push fails.
    /// @param recipient who receives it
    /// @param token listed token
    /// @param amount amount to pay
    /// @return pushed whether the transfer went through now
    function payout(address recipient, address token, uint256 amount) external returns (bool pushed) {
        if (msg.sender != clearingHouse && msg.sender != escapeHatch) revert NotPayer(msg.sender);
        pushed = IERC20(token).trySafeTransfer(recipient, amount);
        if (!pushed) {
            pendingPayout[recipient][token] += amount;
            totalPendingPayout[token] += amount;
            emit PayoutDeferred(recipient, token, amount);
        }
    }

    /// @notice Transfer out for an insurance movement (reverts if the token refuses).
    /// @param token the token
    /// @param to the recipient
    /// @param amount the amount
    function transferOut(address token, address to, uint256 amount) external onlyClearingHouse {
        IERC20(token).safeTransfer(to, amount);
    }

    // ------------------------------------------------------------------ views

    /// @notice The listed tokens, in listing order (the order a batch commits its assets in).
    /// @return the token addresses
    function listedTokens() external view returns (address[] memory) {
        return _tokens;
    }

    /// @notice Number of listed tokens.
    /// @return the count
    function tokenCount() external view returns (uint256) {
        return _tokens.length;
    }

    // ------------------------------------------------------------------ internal

    function _list(address token) private {
        if (token == address(0)) revert ZeroAddress();
        if (isListed[token]) revert TokenAlreadyListed(token);
        if (_tokens.length >= MAX_TOKENS) revert TooManyTokens();
        uint8 dec;
        try IERC20Metadata(token).decimals() returns (uint8 d) {
            dec = d;
        } catch {
            revert UnsupportedDecimals(token);
        }
        if (dec > MAX_DECIMALS) revert UnsupportedDecimals(token);
        isListed[token] = true;
        decimalsOf[token] = dec;
        _tokens.push(token);
        emit TokenListed(token, _tokens.length - 1, dec);
    }
}
