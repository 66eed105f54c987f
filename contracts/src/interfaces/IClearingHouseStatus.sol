// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IClearingHouseStatus
/// @notice The one fact the Vault needs from the ClearingHouse: whether the exchange is frozen.
interface IClearingHouseStatus {
    /// @notice True once the escape hatch is open; deposits stop for good.
    function frozen() external view returns (bool);
}
