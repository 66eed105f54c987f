// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IClearingHouseStatus
/// @notice What the Vault needs from the ClearingHouse: whether the exchange is frozen, which deposits the canonical
///         chain has credited, and how long the operator has to credit one.
interface IClearingHouseStatus {
    /// @notice True once the escape hatch is open; deposits stop for good.
    function frozen() external view returns (bool);

    /// @notice Last deposit id credited by the canonical chain (after a freeze: by the escape batch).
    function lastCreditedDepositId() external view returns (uint48);

    /// @notice Seconds after which an uncredited deposit can be reclaimed by its depositor.
    function depositCreditPeriod() external view returns (uint256);
}
