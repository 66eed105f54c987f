// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @title InsuranceFund
/// @notice The exchange's insurance fund: fees and liquidation surplus in, bankrupt-account losses out.
/// @dev Invariants:
///  - `expectedBalance(token)` changes only in `recordInflow`/`payToVault` (called by the ClearingHouse
///    while it accepts a batch) and `withdraw`/`absorbSurplus` (governance, i.e. the timelock), and every
///    change emits an event carrying the new balance;
///  - `expectedBalance(token) <= IERC20(token).balanceOf(this)`; tokens sent here directly are surplus,
///    invisible to the engine until governance absorbs them.
contract InsuranceFund is AccessControl, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The ClearingHouse: the only caller of the batch paths.
    address public immutable clearingHouse;
    /// @notice The Vault: where batch outflows go.
    address public immutable vault;

    mapping(address token => uint256) private _balance;

    /// @notice An accepted batch moved `amount` from the vault into the fund.
    event BatchInflow(uint64 indexed batchId, address indexed token, uint256 amount, uint256 balance);
    /// @notice An accepted batch moved `amount` from the fund into the vault.
    event BatchOutflow(uint64 indexed batchId, address indexed token, uint256 amount, uint256 balance);
    /// @notice Governance (timelock) sent `amount` out of the fund.
    event GovernanceWithdrawal(address indexed token, address indexed to, uint256 amount, uint256 balance);
    /// @notice Governance (timelock) added tokens sent here directly to the fund's balance.
    event SurplusAbsorbed(address indexed token, uint256 amount, uint256 balance);

    /// @notice A zero address where one is not allowed.
    error ZeroAddress();
    /// @notice A zero amount where one is not allowed.
    error ZeroAmount();
    /// @notice Only the ClearingHouse may call this.
    error NotClearingHouse(address caller);
    /// @notice The fund holds less than requested.
    error InsufficientFundBalance(address token, uint256 requested, uint256 available);
    /// @notice An inflow was recorded that the fund did not receive.
    error UnbackedInflow(address token, uint256 amount);

    modifier onlyClearingHouse() {
        if (msg.sender != clearingHouse) revert NotClearingHouse(msg.sender);
        _;
    }

    /// @param clearingHouse_ the ClearingHouse (precomputed address)
    /// @param vault_ the Vault
    /// @param governance the TimelockController
    constructor(address clearingHouse_, address vault_, address governance) {
        if (clearingHouse_ == address(0) || vault_ == address(0) || governance == address(0)) {
            revert ZeroAddress();
        }
        clearingHouse = clearingHouse_;
        vault = vault_;
        _grantRole(DEFAULT_ADMIN_ROLE, governance);
    }

    /// @notice Record `amount` of `token` the vault just transferred here for batch `batchId`.
    /// @param batchId the batch being accepted
    /// @param token the token
    /// @param amount the amount received
    function recordInflow(uint64 batchId, address token, uint256 amount) external onlyClearingHouse {
        uint256 b = _balance[token] + amount;
        if (IERC20(token).balanceOf(address(this)) < b) revert UnbackedInflow(token, amount);
        _balance[token] = b;
        emit BatchInflow(batchId, token, amount, b);
    }

    /// @notice Pay `amount` of `token` into the vault for batch `batchId` (covering losses).
    /// @param batchId the batch being accepted
    /// @param token the token
    /// @param amount the amount to move
    function payToVault(uint64 batchId, address token, uint256 amount)
        external
        onlyClearingHouse
        nonReentrant
    {
        uint256 b = _balance[token];
        if (amount > b) revert InsufficientFundBalance(token, amount, b);
        b -= amount;
        _balance[token] = b;
        IERC20(token).safeTransfer(vault, amount);
        emit BatchOutflow(batchId, token, amount, b);
    }

    /// @notice Governance withdrawal (through the timelock, so users see it coming for longer than the
    ///         freeze period).
    /// @param token the token
    /// @param to the recipient
    /// @param amount the amount
    function withdraw(address token, address to, uint256 amount)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
        nonReentrant
    {
        if (to == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        uint256 b = _balance[token];
        if (amount > b) revert InsufficientFundBalance(token, amount, b);
        b -= amount;
        _balance[token] = b;
        IERC20(token).safeTransfer(to, amount);
        emit GovernanceWithdrawal(token, to, amount, b);
    }

    /// @notice Add tokens sent here directly (a top-up) to the fund's balance (through the timelock).
    /// @param token the token
    function absorbSurplus(address token) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint256 extra = surplus(token);
        if (extra == 0) revert ZeroAmount();
        uint256 b = _balance[token] + extra;
        _balance[token] = b;
        emit SurplusAbsorbed(token, extra, b);
    }

    /// @notice The balance the engine's insurance fund must match for `token`.
    /// @param token the token
    /// @return the fund's accounted balance
    function expectedBalance(address token) external view returns (uint256) {
        return _balance[token];
    }

    /// @notice Tokens held beyond the accounted balance (direct transfers), not yet absorbed.
    /// @param token the token
    /// @return the surplus
    function surplus(address token) public view returns (uint256) {
        return IERC20(token).balanceOf(address(this)) - _balance[token];
    }
}
