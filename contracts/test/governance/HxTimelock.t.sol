// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

import {ClearingHouse} from "../../src/ClearingHouse.sol";
import {HxTimelock} from "../../src/governance/HxTimelock.sol";
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
        assertEq(timelock.delayFloor(), DELAY_FLOOR);
    }

    function test_constructor_delayBelowFloorReverts() public {
        vm.expectRevert(abi.encodeWithSelector(HxTimelock.DelayBelowFloor.selector, 1 days, 2 days));
        new HxTimelock(1 days, 2 days, governor);
    }

    function test_operationBeforeDelay_reverts() public {
        bytes memory data = abi.encodeCall(ClearingHouse.setOutflowCap, (address(usdc), 1));
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

    /// The delay can move between the floor and anything above it, never below.
    function test_updateDelay_downToTheFloor() public {
        _governance(address(timelock), abi.encodeCall(TimelockController.updateDelay, (DELAY_FLOOR)));
        assertEq(timelock.getMinDelay(), DELAY_FLOOR);
        vm.expectRevert(
            abi.encodeWithSelector(HxTimelock.DelayBelowFloor.selector, DELAY_FLOOR - 1, DELAY_FLOOR)
        );
        vm.prank(address(timelock));
        timelock.updateDelay(DELAY_FLOOR - 1);
    }

    /// An operation executes inside [readyAt, readyAt + GRACE_PERIOD]; expired, it can be cancelled and rescheduled.
    function test_expiry_window_cancel_reschedule() public {
        bytes memory data = abi.encodeCall(ClearingHouse.setOutflowCap, (address(usdc), 7));
        address[] memory targets = new address[](1);
        targets[0] = address(ch);
        uint256[] memory values = new uint256[](1);
        bytes[] memory payloads = new bytes[](1);
        payloads[0] = data;
        vm.startPrank(governor);
        timelock.scheduleBatch(targets, values, payloads, bytes32(0), bytes32(0), TIMELOCK_DELAY);
        bytes32 id = timelock.hashOperationBatch(targets, values, payloads, bytes32(0), bytes32(0));
        vm.warp(block.timestamp + TIMELOCK_DELAY + timelock.GRACE_PERIOD());
        assertFalse(timelock.isOperationExpired(id), "last second of the window");
        vm.warp(block.timestamp + 1);
        assertTrue(timelock.isOperationExpired(id));
        vm.expectRevert(abi.encodeWithSelector(HxTimelock.OperationExpired.selector, id, block.timestamp - 1));
        timelock.executeBatch(targets, values, payloads, bytes32(0), bytes32(0));
        timelock.cancel(id);
        timelock.scheduleBatch(targets, values, payloads, bytes32(0), bytes32(0), TIMELOCK_DELAY);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        timelock.executeBatch(targets, values, payloads, bytes32(0), bytes32(0));
        vm.stopPrank();
        assertEq(ch.outflowCap(address(usdc)), 7);
        assertFalse(timelock.isOperationExpired(id), "done operations are not expired");
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
