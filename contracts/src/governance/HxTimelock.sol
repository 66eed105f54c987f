// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title HxTimelock
/// @notice OpenZeppelin TimelockController with no extra admin, an enforced floor under its delay, and operations
///         that expire. After deployment only the timelock itself administers its roles; `governor` proposes,
///         cancels and executes.
/// @dev Invariants:
///  - `getMinDelay() >= delayFloor` at all times: `updateDelay` below the floor reverts (`DelayBelowFloor`). The
///    ClearingHouse constructor requires `delayFloor` to exceed its freeze and forced-withdrawal periods, so every
///    governance change is announced longer than a user needs to leave (forced withdrawal -> freeze -> escape);
///  - an operation can be executed only in `[readyAt, readyAt + GRACE_PERIOD]`: a ready operation nobody executed
///    does not wait forever for a convenient moment (`OperationExpired`). An expired operation can be cancelled
///    and scheduled again (a fresh delay).
contract HxTimelock is TimelockController {
    /// @notice How long a ready operation stays executable (seconds).
    uint256 public constant GRACE_PERIOD = 14 days;

    /// @notice The delay can never be set below this (seconds).
    uint256 public immutable delayFloor;

    /// @notice `updateDelay` asked for less than the floor.
    error DelayBelowFloor(uint256 requested, uint256 floor);
    /// @notice The operation was ready at `readyAt` and expired at `readyAt + GRACE_PERIOD`.
    error OperationExpired(bytes32 id, uint256 expiredAt);

    /// @param minDelay seconds between scheduling and executing an operation (>= floor)
    /// @param floor the delay floor, fixed for the life of the contract
    /// @param governor the governance multisig: proposer, canceller and executor
    constructor(uint256 minDelay, uint256 floor, address governor)
        TimelockController(minDelay, _one(governor), _one(governor), address(0))
    {
        if (minDelay < floor) revert DelayBelowFloor(minDelay, floor);
        delayFloor = floor;
    }

    /// @inheritdoc TimelockController
    function updateDelay(uint256 newDelay) public override {
        if (newDelay < delayFloor) revert DelayBelowFloor(newDelay, delayFloor);
        super.updateDelay(newDelay);
    }

    /// @inheritdoc TimelockController
    function execute(address target, uint256 value, bytes calldata payload, bytes32 predecessor, bytes32 salt)
        public
        payable
        override
    {
        _notExpired(hashOperation(target, value, payload, predecessor, salt));
        super.execute(target, value, payload, predecessor, salt);
    }

    /// @inheritdoc TimelockController
    function executeBatch(
        address[] calldata targets,
        uint256[] calldata values,
        bytes[] calldata payloads,
        bytes32 predecessor,
        bytes32 salt
    ) public payable override {
        _notExpired(hashOperationBatch(targets, values, payloads, predecessor, salt));
        super.executeBatch(targets, values, payloads, predecessor, salt);
    }

    /// @notice Whether a pending operation is past its execution window.
    /// @param id the operation id
    /// @return true when it can no longer be executed
    function isOperationExpired(bytes32 id) public view returns (bool) {
        uint256 readyAt = getTimestamp(id);
        return readyAt > 1 && block.timestamp > readyAt + GRACE_PERIOD;
    }

    function _notExpired(bytes32 id) private view {
        if (isOperationExpired(id)) revert OperationExpired(id, getTimestamp(id) + GRACE_PERIOD);
    }

    function _one(address a) private pure returns (address[] memory list) {
        list = new address[](1);
        list[0] = a;
    }
}
