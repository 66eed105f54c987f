// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

import {ClearingHouse} from "../../src/ClearingHouse.sol";
import {HxBase} from "../helpers/HxBase.sol";

contract HxTimelockTest is HxBase {
    function test_roleMatrix() public view {
        assertTrue(timelock.hasRole(timelock.PROPOSER_ROLE(), governor));
        assertTrue(timelock.hasRole(timelock.EXECUTOR_ROLE(), governor));
        assertTrue(timelock.hasRole(timelock.CANCELLER_ROLE(), governor));
        assertTrue(timelock.hasRole(timelock.DEFAULT_ADMIN_ROLE(), address(timelock)));
        assertFalse(timelock.hasRole(timelock.DEFAULT_ADMIN_ROLE(), address(this)), "no extra admin");
        assertFalse(timelock.hasRole(timelock.PROPOSER_ROLE(), operator));
        assertFalse(timelock.hasRole(timelock.PROPOSER_ROLE(), guardian));
        assertEq(timelock.getMinDelay(), TIMELOCK_DELAY);
    }

    function test_operationBeforeDelay_reverts() public {
        bytes memory data = abi.encodeCall(ClearingHouse.unpause, ());
        vm.prank(governor);
        timelock.schedule(address(ch), 0, data, bytes32(0), bytes32(0), TIMELOCK_DELAY);
        vm.warp(block.timestamp + TIMELOCK_DELAY - 1);
        bytes32 id = timelock.hashOperation(address(ch), 0, data, bytes32(0), bytes32(0));
        vm.expectRevert(
            abi.encodeWithSelector(
                TimelockController.TimelockUnexpectedOperationState.selector,
                id,
                bytes32(1 << uint8(TimelockController.OperationState.Ready))
            )
        );
        vm.prank(governor);
        timelock.execute(address(ch), 0, data, bytes32(0), bytes32(0));
    }

    function test_scheduleWithShortDelay_reverts() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                TimelockController.TimelockInsufficientDelay.selector, FREEZE_PERIOD, TIMELOCK_DELAY
            )
        );
        vm.prank(governor);
        timelock.schedule(address(ch), 0, "", bytes32(0), bytes32(0), FREEZE_PERIOD);
    }

    /// Rotating the operator goes through the timelock like everything else.
    function test_rotateOperator() public {
        address next = makeAddr("operator2");
        bytes32 role = ch.OPERATOR_ROLE();
        _governance(address(ch), abi.encodeWithSignature("grantRole(bytes32,address)", role, next));
        _governance(address(ch), abi.encodeWithSignature("revokeRole(bytes32,address)", role, operator));
        assertTrue(ch.hasRole(role, next));
        assertFalse(ch.hasRole(role, operator));
    }
}
