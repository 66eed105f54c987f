// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title HxTimelock
/// @notice OpenZeppelin TimelockController with no extra admin: after deployment only the timelock itself
///         administers its roles. `governor` proposes, cancels and executes. Its minimum delay must exceed
///         the ClearingHouse's freeze period (the ClearingHouse constructor checks), so users can exit
///         through the escape hatch before a governance change they dislike takes effect.
contract HxTimelock is TimelockController {
    /// @param minDelay seconds between scheduling and executing an operation
    /// @param governor the governance multisig: proposer, canceller and executor
    constructor(uint256 minDelay, address governor)
        TimelockController(minDelay, _one(governor), _one(governor), address(0))
    {}

    function _one(address a) private pure returns (address[] memory list) {
        list = new address[](1);
        list[0] = a;
    }
}
