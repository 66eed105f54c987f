// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {Vault} from "../src/Vault.sol";
import {HxBase} from "./helpers/HxBase.sol";
import {BlockableToken, FeeToken} from "./helpers/MockTokens.sol";

contract VaultTest is HxBase {
    function test_constructor_listsTokensAndGrantsRoles() public view {
        address[] memory listed = vault.listedTokens();
        assertEq(listed.length, 3);
        assertEq(listed[0], address(usdc));
        assertEq(vault.tokenCount(), 3);
        assertTrue(vault.isListed(address(weth)));
        assertEq(vault.clearingHouse(), address(ch));
        assertTrue(vault.hasRole(vault.DEFAULT_ADMIN_ROLE(), address(timelock)));
        assertTrue(vault.hasRole(vault.GUARDIAN_ROLE(), guardian));
        assertFalse(vault.hasRole(vault.DEFAULT_ADMIN_ROLE(), address(this)), "deployer keeps no role");
    }

    function test_constructor_revertsOnZeroAddresses() public {
        address[] memory none = new address[](0);
        vm.expectRevert(Vault.ZeroAddress.selector);
        new Vault(address(0), address(timelock), guardian, none);
        vm.expectRevert(Vault.ZeroAddress.selector);
        new Vault(address(ch), address(0), guardian, none);
        vm.expectRevert(Vault.ZeroAddress.selector);
        new Vault(address(ch), address(timelock), address(0), none);
    }

    // ------------------------------------------------------------------ deposits

    function test_deposit_sequentialIdsAcrossTokens_andCumulativeSums() public {
        usdc.mint(alice, 100);
        vm.startPrank(alice);
        usdc.approve(address(vault), 100);
        vm.expectEmit(address(vault));
        emit Vault.Deposited(1, bob, address(usdc), 60, alice);
        assertEq(vault.deposit(address(usdc), 60, bob), 1);
        vm.stopPrank();
        assertEq(_depositUncredited(carol, address(weth), 5e18), 2);
        assertEq(_depositUncredited(carol, address(usdc), 7), 3);
        assertEq(vault.depositCount(), 3);
        assertEq(vault.cumulativeDeposits(address(usdc), 0), 0);
        assertEq(vault.cumulativeDeposits(address(usdc), 1), 60);
        assertEq(vault.cumulativeDeposits(address(usdc), 2), 60);
        assertEq(vault.cumulativeDeposits(address(usdc), 3), 67);
        assertEq(vault.cumulativeDeposits(address(weth), 1), 0);
        assertEq(vault.cumulativeDeposits(address(weth), 3), 5e18);
        assertEq(vault.totalDeposits(address(usdc)), 67);
        assertEq(vault.depositHash(1), keccak256(abi.encode(bob, address(usdc), uint256(60))));
        assertEq(usdc.balanceOf(address(vault)), 67);
    }

    function test_deposit_revertsOnUnlistedToken() public {
        FeeToken other = new FeeToken();
        vm.expectRevert(abi.encodeWithSelector(Vault.TokenNotListed.selector, address(other)));
        vault.deposit(address(other), 1, alice);
    }

    function test_deposit_revertsOnZeroAmount() public {
        vm.expectRevert(Vault.ZeroAmount.selector);
        vault.deposit(address(usdc), 0, alice);
    }

    function test_deposit_revertsOnZeroAccount() public {
        vm.expectRevert(Vault.ZeroAddress.selector);
        vault.deposit(address(usdc), 1, address(0));
    }

    function test_deposit_revertsWhenPaused() public {
        vm.prank(guardian);
        vault.pause();
        vm.expectRevert(Pausable.EnforcedPause.selector);
        vault.deposit(address(usdc), 1, alice);
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
        _governance(address(vault), abi.encodeCall(Vault.listToken, (address(fee))));
        fee.mint(alice, 1000);
        vm.startPrank(alice);
        fee.approve(address(vault), 1000);
        vm.expectRevert(abi.encodeWithSelector(Vault.TransferAmountMismatch.selector, 1000, 990));
        vault.deposit(address(fee), 1000, alice);
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ listing

    function test_listToken_onlyGovernanceThroughTimelock() public {
        BlockableToken b = new BlockableToken();
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, guardian, vault.DEFAULT_ADMIN_ROLE()
            )
        );
        vm.prank(guardian);
        vault.listToken(address(b));
        _governance(address(vault), abi.encodeCall(Vault.listToken, (address(b))));
        assertTrue(vault.isListed(address(b)));
        assertEq(vault.listedTokens()[3], address(b));
    }

    function test_listToken_revertsOnDuplicateZeroAndCap() public {
        vm.startPrank(address(timelock));
        vm.expectRevert(abi.encodeWithSelector(Vault.TokenAlreadyListed.selector, address(usdc)));
        vault.listToken(address(usdc));
        vm.expectRevert(Vault.ZeroAddress.selector);
        vault.listToken(address(0));
        for (uint256 i = 3; i < vault.MAX_TOKENS(); ++i) {
            vault.listToken(address(uint160(0x5000 + i)));
        }
        vm.expectRevert(Vault.TooManyTokens.selector);
        vault.listToken(address(0x9999));
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ pause

    function test_pause_onlyGuardian_unpause_onlyGovernance() public {
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
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, guardian, vault.DEFAULT_ADMIN_ROLE()
            )
        );
        vm.prank(guardian);
        vault.unpause();
        _governance(address(vault), abi.encodeCall(Vault.unpause, ()));
        assertFalse(vault.paused());
    }

    // ------------------------------------------------------------------ clearing-house-only paths

    function test_payoutAndTransferOut_onlyClearingHouse() public {
        _deposit(alice, address(usdc), 100);
        address[3] memory callers = [address(timelock), guardian, operator];
        for (uint256 i; i < callers.length; ++i) {
            vm.startPrank(callers[i]);
            vm.expectRevert(abi.encodeWithSelector(Vault.NotClearingHouse.selector, callers[i]));
            vault.payout(callers[i], address(usdc), 1);
            vm.expectRevert(abi.encodeWithSelector(Vault.NotClearingHouse.selector, callers[i]));
            vault.transferOut(address(usdc), callers[i], 1);
            vm.stopPrank();
        }
        assertEq(usdc.balanceOf(address(vault)), 100);
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

/// Batch withdrawals to a recipient the token blocks are deferred, not reverted: one blocked account
/// cannot halt the exchange. The account claims later to an address of its choice.
contract VaultDeferredPayoutTest is HxBase {
    BlockableToken internal busd;

    function setUp() public override {
        busd = new BlockableToken();
        tokens.push(address(busd));
        actors.push(alice);
        actors.push(bob);
        _deploy(tokens);
    }

    function test_blockedRecipient_isDeferred_thenClaimedElsewhere() public {
        busd.mint(alice, 1000);
        vm.startPrank(alice);
        busd.approve(address(vault), 1000);
        vault.deposit(address(busd), 1000, alice);
        vm.stopPrank();
        bal[address(busd)][alice] = 1000;
        _submit();

        busd.setBlocked(alice, true);
        _withdraw(alice, address(busd), 400);
        vm.expectEmit(address(vault));
        emit Vault.PayoutDeferred(alice, address(busd), 400);
        _submit();
        assertEq(vault.pendingPayout(alice, address(busd)), 400);
        assertEq(vault.totalPendingPayout(address(busd)), 400);
        assertEq(busd.balanceOf(address(vault)), 1000);
        assertEq(ch.accountHoldings(address(busd)), 600);

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
