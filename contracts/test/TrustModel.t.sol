// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ClearingHouse} from "../src/ClearingHouse.sol";
import {InsuranceFund} from "../src/InsuranceFund.sol";
import {Vault} from "../src/Vault.sol";
import {HxBase} from "./helpers/HxBase.sol";

/// @notice What each principal can and cannot do, one scenario each (docs/contracts.md, "Trust model"). The
///         stolen operator key is covered by FindingsTest (F1-F3).
contract TrustModelTest is HxBase {
    function _seed() internal {
        _deposit(alice, address(usdc), 10_000e6);
        _deposit(bob, address(weth), 5e18);
        _submit();
    }

    /// A malicious governor (the timelock after its delay) has no path to the vault's tokens.
    function test_maliciousGovernor_cannotMoveVaultFunds() public {
        _seed();
        vm.startPrank(address(timelock));
        vm.expectRevert(abi.encodeWithSelector(Vault.NotClearingHouse.selector, address(timelock)));
        vault.transferOut(address(usdc), governor, 1);
        vm.expectRevert(abi.encodeWithSelector(Vault.NotPayer.selector, address(timelock)));
        vault.payout(governor, address(usdc), 1);
        vm.expectRevert(
            abi.encodeWithSelector(InsuranceFund.InsufficientFundBalance.selector, address(usdc), 1, 0)
        );
        fund.withdraw(address(usdc), governor, 1); // only the fund's own balance, of which there is none
        vm.stopPrank();
        assertEq(usdc.balanceOf(address(vault)), 10_000e6);
    }

    /// A malicious governor sets every cap to 0 (announced 7 days ahead): payouts stall, so a forced withdrawal
    /// goes unpaid, anyone freezes, and every account exits in full through the escape hatch.
    function test_maliciousGovernor_capZero_forcedRequestFreezes_everyoneExits() public {
        _seed();
        _governance(address(ch), abi.encodeCall(ClearingHouse.setOutflowCap, (address(usdc), 0)));
        vm.prank(alice);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 10_000e6, alice);
        bal[address(usdc)][alice] = 0;
        pendingF.push();
        pendingF[0].requestId = rid;
        pendingF[0].amount = 10_000e6;
        _submit(); // the operator serves it ...
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        ClearingHouse.Payout[] memory p = _payoutsOf(2);
        vm.expectRevert(
            abi.encodeWithSelector(ClearingHouse.OutflowCapExceeded.selector, address(usdc), 10_000e6, 0)
        );
        ch.executePayouts(2, p, 1); // ... but the cap of 0 stops the payout
        vm.warp(block.timestamp + FORCED_PERIOD);
        hatch.freezeForUnservedRequest(rid, 2);
        ch.executePayouts(2, p, 1); // after the freeze, what a final batch owes is paid uncapped
        assertEq(usdc.balanceOf(alice), 10_000e6);
        assertEq(_escape(bob)[1], 5e18);
    }

    /// A stolen guardian key voids every young batch: nothing finalises, a forced request goes unpaid, anyone
    /// freezes against the last final batch, and everyone exits what that batch gave them. A delay, not a theft.
    function test_stolenGuardian_voidsEveryBatch_onlyDelays() public {
        _seed();
        vm.warp(block.timestamp + DISPUTE_WINDOW); // batch 1 final
        vm.prank(alice);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 1000e6, alice);
        for (uint256 i; i < FORCED_PERIOD / 12 hours; ++i) {
            _withdraw(alice, address(usdc), 1000e6);
            _submit();
            _challenge(guardian, 2); // the rogue guardian voids it
            bal[address(usdc)][alice] += 1000e6; // the engine rolls back with the chain
            vm.warp(block.timestamp + 12 hours);
        }
        assertEq(ch.lastBatchId(), 1);
        hatch.freezeForUnservedRequest(rid, 1);
        assertEq(_escape(alice)[0], 10_000e6);
        assertEq(_escape(bob)[1], 5e18);
        assertEq(usdc.balanceOf(guardian), 0);
    }

    /// A silent operator: after the freeze period anyone freezes, every account exits its leaves, and the
    /// deposits no batch credited go back to their depositors.
    function test_silentOperator_freeze_allExit_uncreditedReclaimed() public {
        _seed();
        uint48 late = _depositUncredited(carol, address(wbtc), 1e8);
        uint64 at = uint64(block.timestamp);
        vm.warp(block.timestamp + FREEZE_PERIOD);
        vm.prank(dave);
        ch.freeze(1);
        assertEq(_escape(alice)[0], 10_000e6);
        assertEq(_escape(bob)[1], 5e18);
        vm.prank(carol);
        vault.reclaimDeposit(late, address(wbtc), 1e8, at, carol);
        assertEq(wbtc.balanceOf(carol), 1e8);
        assertEq(
            usdc.balanceOf(address(vault)) + weth.balanceOf(address(vault)) + wbtc.balanceOf(address(vault)),
            0
        );
    }
}
