// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Vault} from "../../src/Vault.sol";
import {HxBase} from "../helpers/HxBase.sol";

/// @notice Audit of the contracts (branch audit-contracts): attacks that succeeded against the audited code and are
///         fixed in `contracts/src`. Each test asserts the defence; the commit of the fix quotes its failure before.
contract AuditFixesTest is HxBase {
    /// FINDING A-3 (medium): a pause of the ClearingHouse stops the batches that credit deposits, not the credit
    /// period (1 day, the same as a pause). A deposit the engine credited just before the guardian paused became
    /// reclaimable while batches were still paused: its depositor spent it inside the engine (here: lost it to
    /// carol, its accomplice) and took it back on chain, and the operator could not have credited it in between.
    /// The engine's books were then 500 USDC larger than the vault's. Fixed: a pause in force after the deposit
    /// adds `maxPause` to its credit period (the operator always gets an unpaused stretch to credit it).
    function test_A3_pauseNeverOpensAReclaimTheOperatorCouldNotPrevent() public {
        _deposit(alice, address(usdc), 1000e6);
        _submit();
        uint48 id = _deposit(bob, address(usdc), 500e6); // the engine credits it after N confirmations ...
        uint64 at = uint64(block.timestamp);
        vm.warp(block.timestamp + 1 minutes);
        vm.prank(guardian);
        ch.pause(); // ... but no batch can carry it on chain for a day
        bal[address(usdc)][bob] = 0; // bob loses it to carol inside the engine
        bal[address(usdc)][carol] = 500e6;
        vm.warp(uint256(at) + CREDIT_PERIOD);
        assertTrue(ch.paused(), "batches still paused");
        vm.expectRevert(
            abi.encodeWithSelector(
                Vault.DepositNotOverdue.selector, id, uint256(at) + CREDIT_PERIOD + MAX_PAUSE
            )
        );
        vm.prank(bob);
        vault.reclaimDeposit(id, address(usdc), 500e6, at, bob);

        vm.warp(ch.pausedUntil());
        _submit(); // the first batch after the pause credits it
        vm.expectRevert(abi.encodeWithSelector(Vault.DepositWasCredited.selector, id));
        vm.prank(bob);
        vault.reclaimDeposit(id, address(usdc), 500e6, at, bob);
        assertEq(ch.accountHoldings(address(usdc)), 1500e6, "the books match the engine");
        assertEq(usdc.balanceOf(bob), 0);
    }

    /// A-3, the other side: the extension is bounded, so an operator that keeps posting without crediting a deposit
    /// made before a pause still loses it to its depositor (finding 3 of issue #15 still holds).
    function test_A3_depositStillReclaimableAfterTheExtendedPeriod() public {
        _deposit(alice, address(usdc), 1000e6);
        _submit();
        uint48 id = _depositUncredited(dave, address(usdc), 77e6);
        uint64 at = uint64(block.timestamp);
        vm.prank(guardian);
        ch.pause();
        vm.warp(ch.pausedUntil());
        for (uint256 i; i < 3; ++i) {
            _submit(); // credits nothing new
            vm.warp(block.timestamp + 8 hours);
        }
        vm.warp(uint256(at) + CREDIT_PERIOD + MAX_PAUSE);
        vm.prank(dave);
        vault.reclaimDeposit(id, address(usdc), 77e6, at, dave);
        assertEq(usdc.balanceOf(dave), 77e6);
        assertFalse(ch.frozen());
    }

    /// A-3: with no pause after the deposit, the credit period is unchanged.
    function test_A3_noPause_creditPeriodUnchanged() public {
        vm.prank(guardian);
        ch.pause();
        vm.warp(ch.pausedUntil() + 1); // a pause that ended before the deposit does not count
        uint48 id = _depositUncredited(dave, address(usdc), 77e6);
        uint64 at = uint64(block.timestamp);
        vm.warp(uint256(at) + CREDIT_PERIOD - 1);
        vm.expectRevert(
            abi.encodeWithSelector(Vault.DepositNotOverdue.selector, id, uint256(at) + CREDIT_PERIOD)
        );
        vm.prank(dave);
        vault.reclaimDeposit(id, address(usdc), 77e6, at, dave);
        vm.warp(uint256(at) + CREDIT_PERIOD);
        vm.prank(dave);
        vault.reclaimDeposit(id, address(usdc), 77e6, at, dave);
        assertEq(usdc.balanceOf(dave), 77e6);
    }
}
