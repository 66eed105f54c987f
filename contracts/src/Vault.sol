// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";

import {IClearingHouseStatus} from "./interfaces/IClearingHouseStatus.sol";

/// @title Vault
/// @notice Custody of the listed ERC-20 collateral tokens of the hx exchange.
/// @dev Invariants:
///  - deposit ids are 1, 2, 3, ... across all tokens, one per `Deposited` event, never reused;
///  - `cumulativeDeposits(token, id)` is the sum of all deposits of `token` with id <= `id`;
///  - tokens leave only through `payout`/`transferOut`, callable by the immutable ClearingHouse alone
///    (accepted batches, insurance movements, escape hatch), or through `claim` of a deferred payout by
///    its own account. No role here (governance, guardian) can move a token out.
///  - `totalPendingPayout[token]` is the sum of `pendingPayout[*][token]`.
contract Vault is AccessControl, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using Checkpoints for Checkpoints.Trace208;

    /// @notice Role that may pause deposits (and nothing else).
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    /// @notice Upper bound on listed tokens: keeps every per-asset loop of a batch bounded.
    uint256 public constant MAX_TOKENS = 16;

    /// @notice The only contract that can move tokens out (set once, at construction).
    address public immutable clearingHouse;

    address[] private _tokens;
    /// @notice Whether `token` is listed.
    mapping(address token => bool) public isListed;
    /// @notice Id of the last deposit (0 before the first).
    uint48 public depositCount;
    mapping(address token => Checkpoints.Trace208) private _cumulative;
    /// @notice keccak256(abi.encode(account, token, amount)) of each deposit, for reclaiming uncredited ones.
    mapping(uint256 depositId => bytes32) public depositHash;
    /// @notice Batch withdrawals whose push transfer failed, claimable by the account.
    mapping(address account => mapping(address token => uint256)) public pendingPayout;
    /// @notice Sum of `pendingPayout` per token.
    mapping(address token => uint256) public totalPendingPayout;

    /// @notice A new collateral token was listed at position `index`.
    event TokenListed(address indexed token, uint256 index);
    /// @notice `from` deposited `amount` of `token` for `account`; ids are sequential across tokens.
    event Deposited(
        uint48 indexed depositId, address indexed account, address indexed token, uint256 amount, address from
    );
    /// @notice A batch withdrawal could not be pushed and waits for `claim`.
    event PayoutDeferred(address indexed account, address indexed token, uint256 amount);
    /// @notice A deferred payout was claimed.
    event PayoutClaimed(address indexed account, address indexed token, address to, uint256 amount);

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
    /// @notice Only the ClearingHouse may call this.
    error NotClearingHouse(address caller);
    /// @notice The exchange is frozen: no more deposits.
    error ExchangeFrozen();
    /// @notice The vault received a different amount than transferred (fee-on-transfer tokens are unsupported).
    error TransferAmountMismatch(uint256 expected, uint256 received);
    /// @notice Nothing to claim.
    error NothingToClaim();

    modifier onlyClearingHouse() {
        if (msg.sender != clearingHouse) revert NotClearingHouse(msg.sender);
        _;
    }

    /// @param clearingHouse_ the ClearingHouse address (precomputed: it is deployed right after)
    /// @param governance the TimelockController: admin, lists tokens, unpauses
    /// @param guardian pauses deposits
    /// @param tokens the initial collateral tokens
    constructor(address clearingHouse_, address governance, address guardian, address[] memory tokens) {
        if (clearingHouse_ == address(0) || governance == address(0) || guardian == address(0)) {
            revert ZeroAddress();
        }
        clearingHouse = clearingHouse_;
        _grantRole(DEFAULT_ADMIN_ROLE, governance);
        _grantRole(GUARDIAN_ROLE, guardian);
        for (uint256 i; i < tokens.length; ++i) {
            _list(tokens[i]);
        }
    }

    // ------------------------------------------------------------------ governance / guardian

    /// @notice List a new collateral token (governance, through the timelock). Tokens are never delisted.
    /// @param token the ERC-20 to list
    function listToken(address token) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _list(token);
    }

    /// @notice Stop deposits. Never affects claims or the escape hatch.
    function pause() external onlyRole(GUARDIAN_ROLE) {
        _pause();
    }

    /// @notice Resume deposits (governance, through the timelock).
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    // ------------------------------------------------------------------ users

    /// @notice Deposit `amount` of a listed `token` for `account`; the engine credits it after N confirmations.
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
        Checkpoints.Trace208 storage trace = _cumulative[token];
        trace.push(depositId, SafeCast.toUint208(uint256(trace.latest()) + amount));
        depositHash[depositId] = keccak256(abi.encode(account, token, amount));
        emit Deposited(depositId, account, token, amount, msg.sender);
    }

    /// @notice Claim batch withdrawals that could not be pushed (e.g. the recipient was blocked by the token).
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

    // ------------------------------------------------------------------ clearing house

    /// @notice Pay a batch withdrawal: push it, or keep it claimable if the push fails.
    /// @param account the withdrawing account
    /// @param token listed token
    /// @param amount amount to pay
    /// @return pushed whether the transfer went through now
    function payout(address account, address token, uint256 amount)
        external
        onlyClearingHouse
        returns (bool pushed)
    {
        pushed = IERC20(token).trySafeTransfer(account, amount);
        if (!pushed) {
            pendingPayout[account][token] += amount;
            totalPendingPayout[token] += amount;
            emit PayoutDeferred(account, token, amount);
        }
    }

    /// @notice Transfer out for an insurance movement or an escape-hatch exit.
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

    /// @notice Sum of all deposits of `token` with id <= `depositId`.
    /// @param token the token
    /// @param depositId a deposit id (0 gives 0)
    /// @return the cumulative amount
    function cumulativeDeposits(address token, uint48 depositId) external view returns (uint256) {
        return _cumulative[token].upperLookupRecent(depositId);
    }

    /// @notice Sum of all deposits of `token` so far.
    /// @param token the token
    /// @return the cumulative amount
    function totalDeposits(address token) external view returns (uint256) {
        return _cumulative[token].latest();
    }

    // ------------------------------------------------------------------ internal

    function _list(address token) private {
        if (token == address(0)) revert ZeroAddress();
        if (isListed[token]) revert TokenAlreadyListed(token);
        if (_tokens.length >= MAX_TOKENS) revert TooManyTokens();
        isListed[token] = true;
        _tokens.push(token);
        emit TokenListed(token, _tokens.length - 1);
    }
}
