// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {ClearingHouse} from "../src/ClearingHouse.sol";
import {Vault} from "../src/Vault.sol";
import {ExpiringPause} from "../src/utils/ExpiringPause.sol";
import {HxBase} from "./helpers/HxBase.sol";
import {BlockableToken, FeeToken} from "./helpers/MockTokens.sol";

contract NoDecimals {}

contract VaultTest is HxBase {
    function _acc(bytes32 prev, uint256 id, address account, address token, uint256 amount, uint64 at)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(prev, id, account, token, amount, at));
    }

    function test_constructor_listsTokensRecordsDecimalsAndGrantsRoles() public view {
        address[] memory listed = vault.listedTokens();
        assertEq(listed.length, 3);
        assertEq(listed[0], address(usdc));
        assertEq(vault.tokenCount(), 3);
        assertTrue(vault.isListed(address(weth)));
        assertEq(vault.decimalsOf(address(usdc)), 6);
        assertEq(vault.decimalsOf(address(weth)), 18);
        assertEq(vault.decimalsOf(address(wbtc)), 8);
        assertEq(vault.clearingHouse(), address(ch));
        assertEq(vault.escapeHatch(), address(hatch));
        assertEq(vault.maxPause(), MAX_PAUSE);
        assertTrue(vault.hasRole(vault.DEFAULT_ADMIN_ROLE(), address(timelock)));
        assertTrue(vault.hasRole(vault.GUARDIAN_ROLE(), guardian));
        assertFalse(vault.hasRole(vault.DEFAULT_ADMIN_ROLE(), address(this)), "deployer keeps no role");
    }

    function test_constructor_revertsOnZeroAddressesAndBadTokens() public {
        address[] memory none = new address[](0);
        vm.expectRevert(Vault.ZeroAddress.selector);
        new Vault(address(0), address(1), address(timelock), guardian, MAX_PAUSE, none);
        vm.expectRevert(Vault.ZeroAddress.selector);
        new Vault(address(ch), address(0), address(timelock), guardian, MAX_PAUSE, none);
        vm.expectRevert(Vault.ZeroAddress.selector);
        new Vault(address(ch), address(1), address(0), guardian, MAX_PAUSE, none);
        vm.expectRevert(Vault.ZeroAddress.selector);
        new Vault(address(ch), address(1), address(timelock), address(0), MAX_PAUSE, none);
        vm.expectRevert(ExpiringPause.ZeroMaxPause.selector);
        new Vault(address(ch), address(1), address(timelock), guardian, 0, none);
        address[] memory bad = new address[](1);
        bad[0] = address(new NoDecimals());
        vm.expectRevert(abi.encodeWithSelector(Vault.UnsupportedDecimals.selector, bad[0]));
        new Vault(address(ch), address(1), address(timelock), guardian, MAX_PAUSE, bad);
    }

    // ------------------------------------------------------------------ deposits

    function test_deposit_sequentialIds_runningHash_totals() public {
        usdc.mint(alice, 100);
        vm.startPrank(alice);
        usdc.approve(address(vault), 100);
        bytes32 a1 = _acc(0, 1, bob, address(usdc), 60, uint64(block.timestamp));
        vm.expectEmit(address(vault));
        emit Vault.Deposited(1, bob, address(usdc), 60, alice, uint64(block.timestamp), a1);
        assertEq(vault.deposit(address(usdc), 60, bob), 1);
        vm.stopPrank();
        vm.warp(block.timestamp + 5);
        assertEq(_depositUncredited(carol, address(weth), 5e18), 2);
        assertEq(_depositUncredited(carol, address(usdc), 7), 3);
        assertEq(vault.depositCount(), 3);
        bytes32 a2 = _acc(a1, 2, carol, address(weth), 5e18, uint64(block.timestamp));
        assertEq(vault.depositAccumulator(0), bytes32(0));
        assertEq(vault.depositAccumulator(1), a1);
        assertEq(vault.depositAccumulator(2), a2);
        assertEq(vault.depositAccumulator(3), _acc(a2, 3, carol, address(usdc), 7, uint64(block.timestamp)));
        assertEq(vault.totalDeposited(address(usdc)), 67);
        assertEq(vault.totalDeposited(address(weth)), 5e18);
        assertEq(usdc.balanceOf(address(vault)), 67);
    }

    function test_deposit_uint256Amounts() public {
        uint256 big = type(uint256).max / 2;
        _depositUncredited(alice, address(weth), big);
        assertEq(vault.totalDeposited(address(weth)), big);
    }

    function test_deposit_revertsOnUnlistedZeroAmountZeroAccount() public {
        FeeToken other = new FeeToken();
        vm.expectRevert(abi.encodeWithSelector(Vault.TokenNotListed.selector, address(other)));
        vault.deposit(address(other), 1, alice);
        vm.expectRevert(Vault.ZeroAmount.selector);
        vault.deposit(address(usdc), 0, alice);
        vm.expectRevert(Vault.ZeroAddress.selector);
        vault.deposit(address(usdc), 1, address(0));
    }

    function test_deposit_revertsWhilePaused_untilThePauseExpires() public {
        vm.prank(guardian);
        vault.pause();
        vm.expectRevert(
            abi.encodeWithSelector(ExpiringPause.EnforcedPause.selector, block.timestamp + MAX_PAUSE)
        );
        vault.deposit(address(usdc), 1, alice);
        vm.warp(block.timestamp + MAX_PAUSE);
        _depositUncredited(alice, address(usdc), 1);
    }

    function test_deposit_revertsWhenFrozen() public {
        _freeze();
        usdc.mint(alice, 1);
        vm.startPrank(alice);
        usdc.approve(address(vault), 1);
        vm.expectRevert(Vault.ExchangeFrozen.selector);
        vault.deposit(address(usdc), 1, alice);
        vm.stopPrank();
    }

    function test_deposit_revertsOnFeeOnTransferToken() public {
        FeeToken fee = new FeeToken();
        _governance(address(ch), abi.encodeCall(ClearingHouse.listToken, (address(fee), BIG_CAP)));
        fee.mint(alice, 1000);
        vm.startPrank(alice);
        fee.approve(address(vault), 1000);
        vm.expectRevert(abi.encodeWithSelector(Vault.TransferAmountMismatch.selector, 1000, 990));
        vault.deposit(address(fee), 1000, alice);
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ reclaiming uncredited deposits

    function test_reclaim_afterCreditPeriod_byItsAccountOnly_once() public {
        uint48 id = _depositUncredited(dave, address(usdc), 77e6);
        uint64 at = uint64(block.timestamp);
        vm.startPrank(dave);
        vm.expectRevert(abi.encodeWithSelector(Vault.DepositNotOverdue.selector, id, at + CREDIT_PERIOD));
        vault.reclaimDeposit(id, address(usdc), 77e6, at, dave);
        vm.warp(at + CREDIT_PERIOD);
        vm.expectRevert(abi.encodeWithSelector(Vault.DepositMismatch.selector, id));
        vault.reclaimDeposit(id, address(usdc), 78e6, at, dave); // wrong amount
        vm.expectRevert(abi.encodeWithSelector(Vault.DepositMismatch.selector, id + 1));
        vault.reclaimDeposit(id + 1, address(usdc), 77e6, at, dave); // no such deposit
        vm.expectRevert(Vault.ZeroAddress.selector);
        vault.reclaimDeposit(id, address(usdc), 77e6, at, address(0));
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(Vault.DepositMismatch.selector, id));
        vm.prank(carol); // not its account
        vault.reclaimDeposit(id, address(usdc), 77e6, at, carol);
        vm.expectEmit(address(vault));
        emit Vault.DepositReclaimed(id, dave, address(usdc), 77e6);
        vm.prank(dave);
        vault.reclaimDeposit(id, address(usdc), 77e6, at, carol);
        assertEq(usdc.balanceOf(carol), 77e6);
        assertTrue(vault.reclaimed(id));
        assertEq(vault.reclaimedTotal(address(usdc)), 77e6);
        vm.expectRevert(abi.encodeWithSelector(Vault.AlreadyReclaimed.selector, id));
        vm.prank(dave);
        vault.reclaimDeposit(id, address(usdc), 77e6, at, dave);
    }

    function test_reclaim_refusedOnceCredited_allowedAfterFreezeAtOnce() public {
        uint48 id1 = _deposit(alice, address(usdc), 5e6);
        uint64 at = uint64(block.timestamp);
        _submit();
        vm.warp(at + CREDIT_PERIOD);
        vm.expectRevert(abi.encodeWithSelector(Vault.DepositWasCredited.selector, id1));
        vm.prank(alice);
        vault.reclaimDeposit(id1, address(usdc), 5e6, at, alice);
        uint48 id2 = _depositUncredited(bob, address(usdc), 3e6);
        _freeze();
        vm.prank(bob); // no credit period to wait for once frozen
        vault.reclaimDeposit(id2, address(usdc), 3e6, uint64(at + CREDIT_PERIOD), bob);
        assertEq(usdc.balanceOf(bob), 3e6);
    }

    // ------------------------------------------------------------------ pause

    function test_pause_onlyGuardian_expires_liftable() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, alice, vault.GUARDIAN_ROLE()
            )
        );
        vm.prank(alice);
        vault.pause();
        vm.prank(guardian);
        vault.pause();
        assertTrue(vault.paused());
        vm.warp(block.timestamp + MAX_PAUSE);
        assertFalse(vault.paused(), "expired");
        vm.expectRevert(ExpiringPause.NotPaused.selector);
        vm.prank(guardian);
        vault.unpause();
        vm.warp(block.timestamp + MAX_PAUSE);
        vm.prank(guardian);
        vault.pause();
        vm.prank(guardian);
        vault.unpause();
        assertFalse(vault.paused());
    }

    // ------------------------------------------------------------------ restricted paths

    function test_restrictedPaths() public {
        _deposit(alice, address(usdc), 100);
        address[4] memory callers = [address(timelock), guardian, operator, governor];
        for (uint256 i; i < callers.length; ++i) {
            vm.startPrank(callers[i]);
            vm.expectRevert(abi.encodeWithSelector(Vault.NotPayer.selector, callers[i]));
            vault.payout(callers[i], address(usdc), 1);
            vm.expectRevert(abi.encodeWithSelector(Vault.NotClearingHouse.selector, callers[i]));
            vault.transferOut(address(usdc), callers[i], 1);
            vm.expectRevert(abi.encodeWithSelector(Vault.NotClearingHouse.selector, callers[i]));
            vault.listToken(address(0x1234));
            vm.stopPrank();
        }
        vm.expectRevert(abi.encodeWithSelector(Vault.NotClearingHouse.selector, address(hatch)));
        vm.prank(address(hatch));
        vault.transferOut(address(usdc), alice, 1);
        assertEq(usdc.balanceOf(address(vault)), 100);
    }

    function test_listToken_throughClearingHouse_duplicateZeroCap() public {
        BlockableToken b = new BlockableToken();
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, guardian, ch.DEFAULT_ADMIN_ROLE()
            )
        );
        vm.prank(guardian);
        ch.listToken(address(b), 1);
        _governance(address(ch), abi.encodeCall(ClearingHouse.listToken, (address(b), 123)));
        assertTrue(vault.isListed(address(b)));
        assertEq(vault.listedTokens()[3], address(b));
        assertEq(ch.outflowCap(address(b)), 123);
        vm.startPrank(address(timelock));
        vm.expectRevert(abi.encodeWithSelector(Vault.TokenAlreadyListed.selector, address(usdc)));
        ch.listToken(address(usdc), 1);
        vm.expectRevert(Vault.ZeroAddress.selector);
        ch.listToken(address(0), 1);
        for (uint256 i = 4; i < vault.MAX_TOKENS(); ++i) {
            ch.listToken(address(new BlockableToken()), 1);
        }
        address extra = address(new BlockableToken());
        vm.expectRevert(Vault.TooManyTokens.selector);
        ch.listToken(extra, 1);
        vm.stopPrank();
    }

    function test_claim_revertsWhenNothingPendingOrZeroTo() public {
        vm.expectRevert(Vault.NothingToClaim.selector);
        vm.prank(alice);
        vault.claim(address(usdc), alice);
        vm.expectRevert(Vault.ZeroAddress.selector);
        vm.prank(alice);
        vault.claim(address(usdc), address(0));
    }
}

/// Payouts to a recipient the token blocks are deferred, not reverted: one blocked account cannot halt the
/// exchange. The recipient claims later to an address of its choice.
contract VaultDeferredPayoutTest is HxBase {
    BlockableToken internal busd;

    function setUp() public override {
        super.setUp();
        busd = new BlockableToken();
        address[] memory listed = new address[](1);
        listed[0] = address(busd);
        _deploy(listed);
    }

    function test_blockedRecipient_isDeferred_thenClaimedElsewhere() public {
        busd.mint(alice, 1000);
        vm.startPrank(alice);
        busd.approve(address(vault), 1000);
        vault.deposit(address(busd), 1000, alice);
        vm.stopPrank();
        deps.push(Dep(1, alice, address(busd), 1000, uint64(block.timestamp)));
        _credit(1);
        _submit();

        busd.setBlocked(alice, true);
        _withdraw(alice, address(busd), 400);
        _submit();
        vm.expectEmit(address(vault));
        emit Vault.PayoutDeferred(alice, address(busd), 400);
        _payOut();
        assertEq(vault.pendingPayout(alice, address(busd)), 400);
        assertEq(vault.totalPendingPayout(address(busd)), 400);
        assertEq(busd.balanceOf(address(vault)), 1000);
        assertEq(ch.accountHoldings(address(busd)), 600);
        _submit(); // the books still balance with the deferred payout in the vault

        // claimable even while paused and after a freeze
        vm.prank(guardian);
        vault.pause();
        _freeze();
        vm.prank(alice);
        vault.claim(address(busd), carol);
        assertEq(busd.balanceOf(carol), 400);
        assertEq(vault.totalPendingPayout(address(busd)), 0);
        vm.expectRevert(Vault.NothingToClaim.selector);
        vm.prank(alice);
        vault.claim(address(busd), carol);
    }
}
